"""Constants shared by the consumer loop template (``engine/loop_body.py``) and its driver
(``engine/loop.py``).  A module of its own so that the driver does not import the template
(which would build a second set of dispatchers at every start: ~0.1 s of a warm start)."""

# statuses the loop returns to the driver
ST_STOP = 0          # the shared stop flag was set
ST_LIMIT = 1         # ``limit`` packets received
ST_DEADLINE = 2      # ``deadline_ns`` passed
ST_CHUNK = 3         # about ``chunk_ns`` passed: back to Python (signals), then call again
ST_HANDLER_STOP = 4  # the handler returned a negative value

# idle strategies
IDLE_BUSY, IDLE_SPIN_YIELD, IDLE_BACKOFF = 0, 1, 2

# lstate words (driver <-> loop)
LS_PENDING = 0       # slots peeked and not yet released (non-zero only if the handler raised)
LS_SELECTED = 1      # packets handed to the handler in that burst
LS_SLEEP = 2         # the backoff's current sleep (ns)
LS_WORDS = 4
