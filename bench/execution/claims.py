"""Claims: whoever trains a cell first holds a lease on it, so every cell and seed is trained exactly once.

A claim is a row in a table of the Optuna storage, the one store every worker of a matrix already shares (sqlite
here, PostgreSQL for a cluster). It is taken atomically (an insert, or a compare-and-swap on its owner) and
renewed by a background thread; a holder that dies stops renewing and its lease expires. On the holder's own
machine a dead process is seen at once, so a restart takes its cells over without waiting for the expiry.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import threading
import time

import sqlalchemy as sa

from bench import stores

LEASE_SECONDS = 120.0  # a holder on another machine that stopped renewing is presumed dead after this
RENEW_SECONDS = 20.0

_claims = stores.CLAIMS


def _alive(owner: str) -> bool:
    """Whether ``owner`` (``host/pid/token``) may still be running: a process of this machine is asked directly."""
    host, pid, _ = owner.rsplit("/", 2)
    if host != socket.gethostname():
        return True  # only its lease's expiry can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Claims:
    """The leases this process holds on cells (by cell key), renewed until released or the process ends."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, connect_args=stores.connect_args(url))
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._renew_forever, name="claims-renewal", daemon=True).start()

    def try_claim(self, key: str) -> bool:
        """Take the lease on ``key`` if nobody alive holds it; True when this process now holds it."""
        now = time.time()
        with self.engine.connect() as c:
            row = c.execute(sa.select(_claims.c.owner, _claims.c.expires).where(_claims.c.key == key)).first()
        if row is None:
            try:
                with self.engine.begin() as c:
                    c.execute(sa.insert(_claims).values(key=key, owner=self.owner, expires=now + LEASE_SECONDS))
            except sa.exc.IntegrityError:
                return False  # another process inserted it first
        elif row.owner != self.owner:
            if row.expires > now and _alive(row.owner):
                return False
            with self.engine.begin() as c:  # compare-and-swap: only one of several contenders sees its row updated
                taken = c.execute(
                    sa.update(_claims)
                    .where(_claims.c.key == key, _claims.c.owner == row.owner)
                    .values(owner=self.owner, expires=now + LEASE_SECONDS)
                )
            if taken.rowcount != 1:
                return False
        with self._lock:
            self._held.add(key)
        return True

    def release(self, key: str) -> None:
        with self._lock:
            self._held.discard(key)
        with self.engine.begin() as c:
            c.execute(sa.delete(_claims).where(_claims.c.key == key, _claims.c.owner == self.owner))

    def holder(self, key: str) -> str | None:
        """The owner of a live claim on ``key``, if any."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(_claims.c.owner, _claims.c.expires).where(_claims.c.key == key)).first()
        return row.owner if row is not None and row.expires > time.time() and _alive(row.owner) else None

    def _renew_forever(self) -> None:
        while True:
            time.sleep(RENEW_SECONDS)
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                with self.engine.begin() as c:
                    c.execute(
                        sa.update(_claims)
                        .where(_claims.c.key.in_(held), _claims.c.owner == self.owner)
                        .values(expires=time.time() + LEASE_SECONDS)
                    )
            except sa.exc.SQLAlchemyError:
                continue  # a busy or briefly unreachable store: the next renewal is well inside the lease


@functools.cache
def for_store(url: str) -> Claims:
    """This process's claims in the store at ``url``: one set of leases, renewed by one thread, however many
    times a process trains cells (a Ray worker process runs many cell tasks)."""
    return Claims(url)
