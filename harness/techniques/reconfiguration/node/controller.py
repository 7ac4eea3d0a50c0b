"""The reconfiguration controller: a process on a chosen node that watches stage health
over the emulated network and, when a stage's node fails, has the stage re-placed on a
surviving node and pushes the new route upstream.

Started by the harness in the controller's node as
`python -m harness.techniques.reconfiguration.node.controller PLAN.json EVENTS.jsonl`.
Starting a process on another node is the one thing it cannot do from inside its
namespace, so it asks the harness (its parent, standing in for a node
agent) on stdout, `{"op": "start", "stage": ..., "node": ...}`, and reads the reply on
stdin. Everything else, detection and the route push, crosses the emulated network.

With mode repartition, the plan carries every move for each watched stage (planned
by the harness: harness.techniques.reconfiguration.repartition); at failure time
the controller chooses the move that fits, avoids the failed node and is predicted
fastest, and makes it: a stage started as is, or a neighbouring stage told to load
the merged partition (`LoadModel`), then the new route pushed upstream.
"""

from __future__ import annotations

import json
import sys
import time

import grpc

from harness.pipeline.client import control_call, live_fresh
from harness.pipeline.node.health import EventSink


def ask(msg: dict) -> dict:
    print(json.dumps(msg), flush=True)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)  # the harness is gone
    return json.loads(line)


def push_route(upstream: str, route: dict, attempts: int, timeout_s: float) -> str | None:
    """SetRoute on the upstream stage, retried briefly (it may be busy); the last error,
    or None once the stage took the route."""
    error = "no attempt"
    for _ in range(attempts):
        try:
            reply = control_call(upstream, "SetRoute", {"route": route}, timeout=timeout_s)
        except grpc.RpcError as e:
            error = f"{e.code().name}: {e.details()}"
            time.sleep(0.02)
            continue
        if reply.get("ok"):
            return None
        return f"SetRoute refused: {reply.get('error')}"  # a bad route stays bad
    return error


def ranked(moves: list[dict], failed_node: str) -> list[dict]:
    """The moves that fit the nodes' memory and avoid the failed node, fastest first."""
    return sorted((m for m in moves if m["fits"] and m["node"] != failed_node),
                  key=lambda m: m["predicted_ms"])


def repartition(plan: dict, w: dict, events: EventSink) -> None:
    """Choose and make a move for the failed stage `w` (the next one if it cannot be
    made); every step an event."""
    stage = w["stage"]
    moves = plan["moves"][stage]
    t0 = time.perf_counter()
    order = ranked(moves, w["node"])
    decide_ms = round((time.perf_counter() - t0) * 1000, 4)
    candidates = [{k: v for k, v in m.items() if k != "route"} for m in moves]
    if not order:
        events("repartition", w["addr"], stage=stage, move=None, decide_ms=decide_ms,
               candidates=candidates)
        events("reconfigure.error", w["addr"], stage=stage,
               error="no move fits the surviving nodes")
        return
    for n, move in enumerate(order):
        events("repartition", w["addr"], stage=stage, move=move, decide_ms=decide_ms,
               candidates=candidates, attempt=n + 1)
        if _make(plan, w, move, events):
            return


def _make(plan: dict, w: dict, move: dict, events: EventSink) -> bool:
    """Start the stage or have the neighbour load the merged cut, then push the route."""
    stage = w["stage"]
    load_ms = None
    (route,) = move["route"].values()  # the upstream stage's new route
    if move["kind"] == "as_is":
        reply = ask({"op": "start", "stage": stage, "node": move["node"]})
        if not reply.get("ok"):
            events("reconfigure.error", w["addr"], stage=stage, error=reply.get("error"))
            return False
        route = dict(route, targets=[reply["addr"]])
    else:
        try:
            reply = control_call(move["load"], "LoadModel", {"path": move["file"]}, timeout=10)
        except grpc.RpcError as e:
            reply = {"ok": False, "error": f"{e.code().name}: {e.details()}"}
        if not reply.get("ok"):
            events("reconfigure.error", move["load"], stage=stage, error=reply.get("error"))
            return False
        load_ms = reply.get("load_ms")
    upstream = w["upstream_addr"]
    error = push_route(upstream, route, plan.get("route_attempts", 50),
                       plan.get("route_timeout_s", 1.0))
    if error:
        events("reconfigure.error", upstream, stage=stage, upstream=upstream, error=error)
        return False
    events("reconfigure", route["targets"][0], stage=stage, node=move["node"],
           move=move["kind"], upstream=upstream, load_ms=load_ms)
    return True


def run(plan: dict, events: EventSink) -> None:
    """plan: watch [{stage, addr, upstream_addr, route (the upstream's route)}], replace
    {stage: node}, period_ms, timeout_ms, failures; optional route_attempts (50) and
    route_timeout_s (1) for pushing the new route."""
    period, timeout = plan["period_ms"] / 1000, plan["timeout_ms"] / 1000
    watch = {w["stage"]: w for w in plan["watch"]}
    fails = dict.fromkeys(watch, 0)
    seen_up: set[str] = set()
    while watch:
        t0 = time.monotonic()
        for stage, w in list(watch.items()):
            if live_fresh(w["addr"], timeout):
                fails[stage] = 0
                seen_up.add(stage)
                continue
            fails[stage] += 1
            if stage not in seen_up or fails[stage] < plan["failures"]:
                continue
            events("detect", w["addr"], stage=stage)
            if plan.get("mode") == "repartition":
                repartition(plan, w, events)
                del watch[stage]
                continue
            node = plan["replace"][stage]
            reply = ask({"op": "start", "stage": stage, "node": node})
            if not reply.get("ok"):
                events("reconfigure.error", w["addr"], stage=stage, error=reply.get("error"))
                del watch[stage]
                continue
            route = dict(w["route"], targets=[reply["addr"]])
            error = push_route(w["upstream_addr"], route, plan.get("route_attempts", 50),
                               plan.get("route_timeout_s", 1.0))
            if error:
                events("reconfigure.error", reply["addr"], stage=stage, node=node,
                       upstream=w["upstream_addr"], error=error)
            else:
                events("reconfigure", reply["addr"], stage=stage, node=node,
                       upstream=w["upstream_addr"])
            del watch[stage]
        time.sleep(max(0.0, t0 + period - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print(f"usage: python -m {__spec__.name} PLAN.json EVENTS.jsonl", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        plan = json.load(f)
    run(plan, EventSink(args[1], f"{plan['node']}:controller"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
