"""The bench room: the streaming benchmarks (`lrsa bench pipeline|scaling|aggregate`), each a
ratio measured in one run, and what they share (run.py: a work folder, a throw-away broker).

May import: any room of workers/ (it drives them), not the command modules.
"""
