#!/usr/bin/env python3
"""Admin write load for `scripts/bench --writes` (issue 14): sends
`updateAnime` / `createAnime` mutations to an AniGo server at a fixed rate,
evenly spaced, while wrk drives the read mix.

Python 3 standard library only (http.client with keep-alive connections,
one per worker thread).

Kinds of write (all through GraphQL, `Authorization: Bearer TOKEN`):

  popularity  a view-count increment: popularity += 1..50
  score       score += or -= 0.1..0.5, clamped to 0..10
  synopsis    a new synopsis
  genres      one of the anime's genres replaced by another existing genre
  title       a new title (the old one plus " (rev N)")
  create      a new anime with 2-3 existing genres

Mixes (--mix): `realistic` (popularity 50, score 15, synopsis 10, genres 10,
title 10, create 5), `edits+scores` (synopsis 50, score 50), or explicit
weights such as `score=1,title=3`.

Ids: half the writes go to ids 1..--detail-ids (what the detail pages
read), half to a pool of --random-ids distinct ids drawn at random from the
rest of the catalogue (1..animeCount). At start-up the writer reads each of
those ids' title, score, popularity and genres with one GraphQL query per
id (`query BenchWriterState`), then keeps a local model: every write is
computed from, and applied to, that model.

Every mutation is a named operation `BenchWrite<Kind>` (e.g.
`BenchWriteScore`, sent as `operationName` too), so the server's
`anigo_graphql_requests_total{operation=...}` counts them apart from the
reads.

Schedule: write i is due at start + i / rate. A dispatcher hands each due
write to --connections workers; when all are busy, writes queue up and go
late (the achieved rate then falls below the target; the report says by how
much). A write that fails (HTTP error, connection error, or a GraphQL answer
with `errors`) is an error; each distinct message is printed once.

Output: "READY ..." on stdout once the start-up reads are done, and when
the run ends (after --duration seconds, or on SIGTERM / SIGINT) one line

  WRITER_RESULT target=R sent=N ok=N errors=N elapsed_s=S achieved=R ...

on stdout, plus a human-readable summary on stderr. Exit status 0 even with
write errors (they are reported); 2 on bad arguments, 1 when the start-up
reads fail.
"""

import argparse
import http.client
import json
import os
import queue
import random
import re
import signal
import sys
import threading
import time
import urllib.parse

KINDS = ("popularity", "score", "synopsis", "genres", "title", "create")
MIXES = {
    "realistic": {"popularity": 50, "score": 15, "synopsis": 10, "genres": 10, "title": 10, "create": 5},
    "edits+scores": {"synopsis": 50, "score": 50},
}

MUTATIONS = {
    "popularity": "mutation BenchWritePopularity($id: ID!, $v: Int!) "
    "{ updateAnime(id: $id, input: {popularity: $v}) { id } }",
    "score": "mutation BenchWriteScore($id: ID!, $v: Float!) "
    "{ updateAnime(id: $id, input: {score: $v}) { id } }",
    "synopsis": "mutation BenchWriteSynopsis($id: ID!, $v: String!) "
    "{ updateAnime(id: $id, input: {synopsis: $v}) { id } }",
    "genres": "mutation BenchWriteGenres($id: ID!, $v: [String!]!) "
    "{ updateAnime(id: $id, input: {genres: $v}) { id } }",
    "title": "mutation BenchWriteTitle($id: ID!, $v: String!) "
    "{ updateAnime(id: $id, input: {title: $v}) { id } }",
    "create": "mutation BenchWriteCreate($input: CreateAnimeInput!) { createAnime(input: $input) { id } }",
}
SETUP_QUERY = "query BenchWriterSetup { animeCount genres { name } }"
STATE_QUERY = (
    "query BenchWriterState($id: ID!) { anime(id: $id) { id title score popularity genres } }"
)
TITLE_REVISION = re.compile(r" \(rev \d+\)$")


def parse_mix(text):
    if text in MIXES:
        return dict(MIXES[text])
    mix = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in KINDS or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"expected {' or '.join(MIXES)} or weights such as score=1,title=3 "
                f"(kinds: {', '.join(KINDS)}), got {text!r}"
            )
        mix[name] = int(weight)
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("the weights add up to 0")
    return mix


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench-writer.py",
        description="Admin mutations at a fixed rate against an AniGo server (see the module doc).",
    )
    p.add_argument("--url", required=True, help="GraphQL endpoint, e.g. http://127.0.0.1:8080/graphql")
    p.add_argument("--token", help="admin token (default: the ADMIN_TOKEN environment variable)")
    p.add_argument("--rate", type=float, required=True, help="writes per second (0: only the start-up reads)")
    p.add_argument("--mix", type=parse_mix, default=parse_mix("realistic"),
                   help="realistic (default), edits+scores, or weights such as score=1,title=3")
    p.add_argument("--duration", type=float, default=0,
                   help="seconds of writing; 0 (default): until SIGTERM or SIGINT")
    p.add_argument("--detail-ids", type=int, default=200, help="ids 1..N get half the writes (default 200)")
    p.add_argument("--random-ids", type=int, default=300,
                   help="size of the random pool of other ids that gets the other half (default 300)")
    p.add_argument("--connections", type=int, default=32,
                   help="keep-alive connections / worker threads, so slow answers delay later writes "
                   "as little as possible (default 32)")
    p.add_argument("--timeout", type=float, default=10, help="seconds per request (default 10)")
    p.add_argument("--seed", type=int, help="random seed (default: time-based)")
    args = p.parse_args(argv)
    if args.token is None:
        args.token = os.environ.get("ADMIN_TOKEN")
    if not args.token:
        p.error("--token or ADMIN_TOKEN is required")
    if args.rate < 0 or args.connections < 1 or args.detail_ids < 1 or args.random_ids < 0:
        p.error("--rate must be >= 0, --connections and --detail-ids >= 1, --random-ids >= 0")
    return args


class Client:
    """One keep-alive connection; reconnects after any failure."""

    def __init__(self, url, token, timeout):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise SystemExit(f"bench-writer: only http:// URLs are supported, got {url}")
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path or "/graphql"
        self.timeout = timeout
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "Connection": "keep-alive",
        }
        self.conn = None

    def post(self, query, variables):
        """The decoded answer's data, or raises RuntimeError with a one-line reason."""
        # operationName too: the server labels its metrics with it, not
        # with the name inside the document.
        name = re.match(r"\s*(?:query|mutation)\s+(\w+)", query)
        body = json.dumps({"query": query, "operationName": name and name.group(1), "variables": variables})
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", self.path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
                # A kept-alive connection the server closed: retry once on a
                # fresh one (the request was not processed).
                self.close()
                if attempt == 2:
                    raise RuntimeError(f"connection: {type(err).__name__}: {err}") from None
            except (OSError, http.client.HTTPException) as err:
                self.close()
                raise RuntimeError(f"connection: {type(err).__name__}: {err}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise RuntimeError(f"HTTP {status}: not JSON: {raw[:200]!r}") from None
        if isinstance(answer, dict) and answer.get("errors"):
            first = answer["errors"][0]
            code = (first.get("extensions") or {}).get("code", "")
            raise RuntimeError(f"GraphQL error{' ' + code if code else ''}: {first.get('message')}")
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {raw[:200]!r}")
        return answer.get("data")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Model:
    """What the writer believes the written anime look like."""

    def __init__(self, rng, genres):
        self.rng = rng
        self.genres = genres
        self.anime = {}  # id -> {"title", "score", "popularity", "genres"}
        self.detail_ids = []
        self.random_ids = []
        self.revision = 0
        self.lock = threading.Lock()

    def next_write(self, kinds, weights):
        """A write of a kind drawn by weight: (kind, query, variables, id or
        None), applied to the model at once."""
        with self.lock:
            rng = self.rng
            kind = rng.choices(kinds, weights)[0]
            self.revision += 1
            rev = self.revision
            if kind == "create":
                names = rng.sample(self.genres, min(len(self.genres), rng.randint(2, 3)))
                stamp = f"{int(time.time())}-{rev}"
                return kind, MUTATIONS[kind], {"input": {
                    "title": f"Bench Writer Anime {stamp}",
                    "format": "TV",
                    "status": "FINISHED",
                    "year": rng.randint(1990, 2024),
                    "episodes": rng.randint(1, 26),
                    "score": round(rng.uniform(5, 9), 2),
                    "popularity": rng.randint(0, 1000),
                    "genres": names,
                    "pictureUrl": f"https://example.com/bench-writer/{stamp}.jpg",
                    "synopsis": f"Created by scripts/bench-writer.py ({stamp}).",
                }}, None
            pool = self.detail_ids if (rng.random() < 0.5 or not self.random_ids) else self.random_ids
            anime_id = rng.choice(pool)
            a = self.anime[anime_id]
            if kind == "popularity":
                a["popularity"] = (a["popularity"] or 0) + rng.randint(1, 50)
                value = a["popularity"]
            elif kind == "score":
                current = a["score"] if a["score"] is not None else 7.0
                delta = round(rng.uniform(0.1, 0.5), 2) * rng.choice((-1, 1))
                value = round(min(10.0, max(0.0, current + delta)), 2)
                if value == current:  # at a bound: go the other way
                    value = round(min(10.0, max(0.0, current - delta)), 2)
                a["score"] = value
            elif kind == "synopsis":
                value = f"Synopsis revision {rev}, edited by scripts/bench-writer.py at {time.time():.3f}."
            elif kind == "genres":
                current = list(a["genres"])
                others = [g for g in self.genres if g not in current]
                if not others:
                    current.pop(rng.randrange(len(current)))
                elif not current:
                    current = [rng.choice(others)]
                else:
                    current[rng.randrange(len(current))] = rng.choice(others)
                a["genres"] = current
                value = current
            elif kind == "title":
                base = TITLE_REVISION.sub("", a["title"])[:240]
                value = f"{base} (rev {rev})"
                a["title"] = value
            else:
                raise ValueError(kind)
            return kind, MUTATIONS[kind], {"id": str(anime_id), "v": value}, anime_id


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = 0
        self.errors = 0
        self.by_kind = {k: 0 for k in KINDS}
        self.errors_by_kind = {k: 0 for k in KINDS}
        self.seen_errors = set()
        self.latencies = []
        self.max_lag = 0.0
        self.late = 0

    def record(self, kind, error, latency, lag, interval):
        with self.lock:
            self.sent += 1
            self.by_kind[kind] += 1
            self.latencies.append(latency)
            self.max_lag = max(self.max_lag, lag)
            if lag > interval:
                self.late += 1
            if error is None:
                self.ok += 1
                return
            self.errors += 1
            self.errors_by_kind[kind] += 1
            if error not in self.seen_errors:
                self.seen_errors.add(error)
                print(f"bench-writer: write error ({kind}): {error}", file=sys.stderr, flush=True)


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def load_model(args, rng):
    client = Client(args.url, args.token, args.timeout)
    try:
        setup = client.post(SETUP_QUERY, {})
    except RuntimeError as err:
        raise SystemExit(f"bench-writer: start-up query failed: {err}")
    count = int(setup["animeCount"])
    genres = [g["name"] for g in setup["genres"]]
    if count < 1 or len(genres) < 2:
        raise SystemExit(f"bench-writer: need anime and 2+ genres, found {count} anime, {len(genres)} genres")
    model = Model(rng, genres)
    detail = list(range(1, min(args.detail_ids, count) + 1))
    rest = range(len(detail) + 1, count + 1)
    pool = rng.sample(rest, min(args.random_ids, len(rest)))
    for anime_id in detail + pool:
        try:
            data = client.post(STATE_QUERY, {"id": str(anime_id)})
        except RuntimeError as err:
            raise SystemExit(f"bench-writer: reading anime {anime_id} failed: {err}")
        a = data.get("anime")
        if a is None:  # ids need not be contiguous
            continue
        model.anime[anime_id] = {
            "title": a["title"], "score": a["score"], "popularity": a["popularity"], "genres": a["genres"],
        }
        (model.detail_ids if anime_id <= args.detail_ids else model.random_ids).append(anime_id)
    client.close()
    if not model.detail_ids:
        raise SystemExit("bench-writer: none of the detail ids exists")
    return model, count


def main(argv):
    args = parse_args(argv)
    rng = random.Random(args.seed)
    mix = args.mix
    model, count = load_model(args, rng)
    kinds = [k for k in KINDS if mix.get(k, 0) > 0]
    weights = [mix[k] for k in kinds]
    print(
        f"READY ids={len(model.detail_ids)}+{len(model.random_ids)} catalogue={count} "
        f"genres={len(model.genres)} rate={args.rate:g} mix={','.join(f'{k}={mix[k]}' for k in kinds)}",
        flush=True,
    )

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stats = Stats()
    interval = 1.0 / args.rate if args.rate > 0 else float("inf")
    work = queue.Queue()

    def worker():
        client = Client(args.url, args.token, args.timeout)
        while True:
            item = work.get()
            if item is None:
                break
            due = item
            started = time.monotonic()
            kind, query, variables, _ = model.next_write(kinds, weights)
            error = None
            try:
                client.post(query, variables)
            except RuntimeError as err:
                error = str(err)
            stats.record(kind, error, time.monotonic() - started, started - due, interval)
        client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.connections)]
    for t in threads:
        t.start()
    start = time.monotonic()
    deadline = start + args.duration if args.duration > 0 else float("inf")
    dispatched = 0
    if args.rate > 0:
        while not stop.is_set():
            due = start + dispatched * interval
            if due >= deadline:
                break
            wait = due - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            work.put(due)
            dispatched += 1
    else:
        while not stop.is_set() and time.monotonic() < deadline:
            stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    ended = time.monotonic()
    # Writes already handed out finish; queued ones are dropped.
    dropped = 0
    while True:
        try:
            item = work.get_nowait()
        except queue.Empty:
            break
        if item is not None:
            dropped += 1
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(timeout=args.timeout + 1)
    elapsed = max(ended - start, 1e-9)
    with stats.lock:
        achieved = stats.sent / elapsed
        kinds_text = ",".join(f"{k}:{stats.by_kind[k]}" for k in KINDS if stats.by_kind[k])
        errors_text = ",".join(f"{k}:{stats.errors_by_kind[k]}" for k in KINDS if stats.errors_by_kind[k])
        line = (
            f"WRITER_RESULT target={args.rate:g} sent={stats.sent} ok={stats.ok} errors={stats.errors} "
            f"dropped={dropped} elapsed_s={elapsed:.2f} achieved={achieved:.2f} late={stats.late} "
            f"max_lag_ms={stats.max_lag * 1e3:.0f} p50_ms={percentile(stats.latencies, 50) * 1e3:.1f} "
            f"p99_ms={percentile(stats.latencies, 99) * 1e3:.1f} kinds={kinds_text or '-'} "
            f"error_kinds={errors_text or '-'}"
        )
    print(line, flush=True)
    print(
        f"bench-writer: {stats.sent} writes in {elapsed:.1f}s = {achieved:.2f}/s (target {args.rate:g}/s), "
        f"{stats.errors} errors, {stats.late} late by more than one interval (max {stats.max_lag * 1e3:.0f} ms), "
        f"{dropped} queued writes not sent at the end",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
