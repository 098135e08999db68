"""Virtual-host canary of the seeds: the canary on its own host name.

``canary.foo.bar`` reaches the canary Service; ``foo.bar`` and requests for any other Host
(the seed's "no Host header", i.e. the bare IP) reach the stable one.
"""

from __future__ import annotations

from pytest_canary import Harness


def test_canary_host_routes_by_virtual_host(canary: Harness) -> None:
    """Vhost canary: canary.foo.bar → canary; foo.bar and an unknown Host → stable."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", canary_host="canary.foo.bar")
    rel.expect_routed("2.0", headers={"Host": "canary.foo.bar"})
    rel.expect_routed("1.0", headers={"Host": "foo.bar"})
    rel.expect_routed("1.0", headers={"Host": "10.0.0.1"})
    rel.promote()
    rel.expect_routed("2.0", headers={"Host": "foo.bar"})
