"""Coverage-guided fuzzing (atheris) of every decoder the client runs on untrusted bytes.

``targets`` holds one function per decoder, ``seeds`` makes the seed corpus in ``corpus/``, and
``run`` runs targets under libFuzzer and reports executions and crashes (see README.md).
"""
