"""``hermes-eval``: answer quality of live streams, measured over the public API.

One module per job: ``questions`` (the one question model every benchmark is read into), ``readers``
(StreamingBench, OVO-Bench and the HERMES authors' converted JSONs), ``prompts`` and ``scoring`` (what is
asked, and how an answer is graded), ``schedule`` (which frames precede which question), ``runners`` (a
session per policy, or a stateless recent-frames request), ``results`` (resumable JSON lines), ``report``
(the markdown table), ``synth`` (a synthetic benchmark drawn here) and ``cli``.
"""
