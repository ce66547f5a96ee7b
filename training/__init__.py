"""Training the tiny shapes model: a Qwen2.5-VL small enough to train on 2 CPU cores, taught the synthetic
streaming benchmark's distribution (clients/eval/synth.py) so that hermes-eval and the demo give answers
that mean something. Retrain with ``python -m training.train`` (docs/quality.md says how long it takes);
the weights ship under ``models/tiny-shapes-qwen2.5-vl/`` so nobody has to.
"""
