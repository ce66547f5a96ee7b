"""Several hermes-serve workers behind SGLang's model gateway (``smg``): the ``hermes-cluster`` command."""
