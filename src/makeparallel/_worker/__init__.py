"""What a worker process imports, and nothing else.

Every new or replacement worker pays for its imports before its first task,
so a worker imports only the modules of this package (and ``makeparallel``
itself, whose names load lazily): the loop (``main``), the frame format
(``wire``), pickling (``serialize``), what a task can ask about itself
(``context``), running a map chunk (``chunk``), the processes a task
started (``process_tree``) and whether this is a worker (``state``). None of
them may import the rest of the package, nor ``typing`` at run time; a test
checks what a worker has imported once it is running.
"""
