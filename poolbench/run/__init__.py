"""One run end to end (config -> data -> model -> checks -> train -> measure -> record), its
lock and watchdog, the job reports of a sweep, and interleaved timing of recorded runs.

May import every layer below (``core`` to ``engine``); never the display, reports or Hydra.
"""
