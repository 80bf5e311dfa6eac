"""ScopedSecrets and ChainSecrets pass a fleet store's lock and compare-and-set through.

The profiles wrap the store (`ScopedSecrets(..., "llm")`, `ChainSecrets(EnvironmentSecrets(),
store)`); the session store looks the capabilities up on the outermost provider, so a
wrapper that hid them would silently fall back to the per-host file lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from oauth_auth import ChainSecrets, EnvironmentSecrets, MemorySecrets, ScopedSecrets


class FleetLike(MemorySecrets):
    """A provider with the three capabilities, recording the names it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.dones: list[Callable[[], bool] | None] = []

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float,
             done: Callable[[], bool] | None = None) -> Iterator[None]:
        self.calls.append(("lock", name))
        self.dones.append(done)
        yield

    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        self.calls.append(("cas", name))
        if (self.get_secret(name) or None) != expected:
            return False
        self.set_secret(name, value)
        return True

    def compare_and_delete(self, name: str, expected: str) -> bool:
        self.calls.append(("cad", name))
        if self.get_secret(name) != expected:
            return False
        self.delete_secret(name)
        return True


def test_scoped_passes_the_capabilities_on_the_scoped_name() -> None:
    inner = FleetLike()
    scoped = ScopedSecrets(inner, "llm")
    assert scoped.lock is not None
    assert scoped.compare_and_set is not None
    assert scoped.compare_and_delete is not None
    with scoped.lock("K", timeout=1):
        pass

    def done() -> bool:
        return True

    with scoped.lock("K", timeout=1, done=done):  # the wait's check is passed on too
        pass
    assert inner.dones == [None, done]
    inner.calls.remove(("lock", "__thv_llm_K"))
    assert scoped.compare_and_set("K", None, "v1")
    assert not scoped.compare_and_set("K", None, "v2")
    assert inner.get_secret("__thv_llm_K") == "v1"
    assert scoped.compare_and_delete("K", "v1")
    assert inner.calls == [("lock", "__thv_llm_K"), ("cas", "__thv_llm_K"),
                           ("cas", "__thv_llm_K"), ("cad", "__thv_llm_K")]


def test_wrappers_of_plain_providers_offer_none() -> None:
    for wrapper in (ScopedSecrets(MemorySecrets(), "x"), ChainSecrets(MemorySecrets()),
                    ChainSecrets(FleetLike(), MemorySecrets())):  # two writers: no single lock
        assert wrapper.lock is None
        assert wrapper.compare_and_set is None
        assert wrapper.compare_and_delete is None


def test_chain_uses_its_only_writable_provider() -> None:
    store = FleetLike()
    chain = ScopedSecrets(ChainSecrets(EnvironmentSecrets(), store), "llm")  # the LLM profile
    assert chain.lock is not None
    assert chain.compare_and_set is not None
    with chain.lock("K", timeout=1):
        assert chain.compare_and_set("K", None, "v")
    assert store.calls == [("lock", "__thv_llm_K"), ("cas", "__thv_llm_K")]
