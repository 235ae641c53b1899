"""Both experiment hooks at once (a folder's sitecustomize is the only one Python imports): the async-TP pass's
decisions (.carry/xasync, X_ASYNC_MIN) and the AG/RS patterns it finds per graph (.carry/xdump, X_DUMP)."""
import os
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _f in ("xasync", "xdump"):
    exec(compile(open(os.path.join(_here, _f, "sitecustomize.py")).read(), _f, "exec"))
