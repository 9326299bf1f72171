"""One adapter per cloud behind one Protocol (base.py). Adapters are synchronous SDK code: the
handlers call them in worker threads, never on the event loop."""
