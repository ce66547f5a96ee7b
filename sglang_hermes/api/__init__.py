"""The public, OpenAI-shaped session API: ``/v1/sessions`` and the ``session`` extension of chat completions."""
