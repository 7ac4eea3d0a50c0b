"""Node processes forked from one process that has imported their libraries already
(`server.py`: the zygote; `client.py`: the harness's side). See `server.py` for why."""
