"""The bed's own verdict (testbed/checks.py) on serving certificates: a missing one is named as
missing, not as one whose SANs are empty (kind's entrypoint removes apiserver.crt to remake it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from testbed.checks import CertSans, Report, verdict

CP = "kb-control-plane"


def _verdict(*certs: CertSans) -> tuple[str, ...]:
    bed: Any = SimpleNamespace(control_planes=[], seeded_keys=0, lb=False)
    report = Report(ips={CP: "172.29.0.4"}, members=(), member_list_error="", data=(),
                    certs=certs, health=(), lb=(), lb_error="")
    return verdict(bed, report)


def test_a_certificate_read_without_the_ip_names_its_sans() -> None:
    reasons = _verdict(CertSans(CP, "apiserver.crt", (), ("172.29.0.2",)))
    assert reasons == (f"{CP} apiserver.crt SANs ['172.29.0.2'] lack its IP 172.29.0.4",)


def test_a_certificate_not_read_is_named_unreadable_not_empty() -> None:
    reasons = _verdict(CertSans(CP, "apiserver.crt", (), (), read=False))
    assert reasons == (f"{CP} apiserver.crt unreadable (none yet, or being remade)",)


def test_a_certificate_with_the_ip_gives_no_reason() -> None:
    assert _verdict(CertSans(CP, "apiserver.crt", (), ("172.29.0.4",))) == ()
