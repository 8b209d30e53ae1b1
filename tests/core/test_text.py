from lrsa.text import tokenize_words


def test_splits_like_the_benchmarks():
    text = "RT @ltsChuckBass: Chuck Bass is everything #MCM"
    words = [w for w, _, _ in tokenize_words(text)]
    assert words == ["RT", "@", "ltsChuckBass", ":", "Chuck", "Bass", "is", "everything", "#", "MCM"]


def test_apostrophes_and_quotes_are_words_of_their_own():
    words = [w for w, _, _ in tokenize_words("Trump’s \"I'm excited\"")]
    assert words == ["Trump", "’", "s", '"', "I", "'", "m", "excited", '"']


def test_offsets_point_into_the_raw_text():
    text = "  Go   @NASA!! see https://t.co/x1 ok"
    tokens = tokenize_words(text)
    assert all(text[s:e] == w for w, s, e in tokens)
    assert [w for w, _, _ in tokens] == ["Go", "@", "NASA", "!", "!", "see", "https://t.co/x1", "ok"]


def test_empty_text():
    assert tokenize_words("") == [] and tokenize_words("   ") == []
