"""The outside audit's probes (issue 15) run again against the real provider, with the
figures README's "Reliability" section gives (what the audit measured, what it is now)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams
from tests.reliability.conftest import Figures
from tests.support.browser import http_device_approve
from tests.support.idp import DEVICE_GRANT, IdP

APPROVE_AFTER = 3.0


def test_a_device_interval_of_10_ms_is_polled_at_most_once_a_second(
    real_idp: IdP, tmp_path: Path, figures: Figures
) -> None:
    """The audit: a provider saying `interval: 0.04` got 68 polls in 3 s."""
    real_idp.configure(device_interval=0.01)
    approved: list[float] = []

    def opener(url: str) -> bool:
        def approve() -> None:
            time.sleep(APPROVE_AFTER)
            http_device_approve(url)
            approved.append(time.monotonic())

        threading.Thread(target=approve, daemon=True).start()
        return True

    source = OAuthTokenSource(
        OIDCParams(real_idp.issuer, real_idp.client_id), key_provider=lambda: "KD",
        secrets_provider=MemorySecrets(), interactive=True, login_method="device",
        open_browser=opener, lock_dir=str(tmp_path / "locks"))
    started = time.monotonic()
    assert source.token()
    took = time.monotonic() - started
    polls = real_idp.token_requests(DEVICE_GRANT, outcome=None)
    assert approved
    # Before the floor: a poll every 10 ms, some 300 until the approval. Now one a second.
    assert APPROVE_AFTER <= polls <= took + 1, (polls, took)
    figures.add("device interval 0.01 s, approved after 3 s", "polled once a second",
                polls=polls, seconds=round(took, 1))
