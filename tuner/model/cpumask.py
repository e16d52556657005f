"""CPU sets in their two kernel spellings, compared after normalising (pure).

``/proc/irq/N/smp_affinity`` and RPS masks are comma-separated hex words
(``00000000,0000000f``); ``smp_affinity_list`` is a list of ranges (``0-3``). Both
normalise to the canonical range list, so ``00000000,0000000f == 0-3``.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_CPUS = 8192


def parse_hex_mask(text: str) -> frozenset[int]:
    """CPUs set in a kernel hex mask (``ff``, ``00000000,0000000f``)."""
    words = text.strip().replace(",", "")
    if not words:
        return frozenset()
    value = int(words, 16)
    if value.bit_length() > MAX_CPUS:
        raise ValueError(f"CPU mask wider than {MAX_CPUS} CPUs")
    return frozenset(i for i in range(value.bit_length()) if value >> i & 1)


def parse_cpu_list(text: str) -> frozenset[int]:
    """CPUs in a range list (``0-3,8``); empty text is the empty set."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first < 0 or last < first or last >= MAX_CPUS:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int]) -> str:
    """Canonical range list: sorted, merged ranges (``0-3,8``); empty set is ``""``."""
    out: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def normalise_mask(text: str) -> str:
    """A hex mask (``00000000,0000000f``) as the canonical range list (``0-3``)."""
    return format_cpu_list(parse_hex_mask(text))


def normalise_list(text: str) -> str:
    """A range list in any order or overlap (``3,0-2``) as the canonical one (``0-3``)."""
    return format_cpu_list(parse_cpu_list(text))


def format_hex_mask(cpus: frozenset[int]) -> str:
    """The kernel's hex spelling (what RPS and smp_affinity files accept)."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    return format(value, "x")


def spread_cpus(online: Sequence[int], allowed: str | None) -> list[int]:
    """The CPUs a NIC's queue IRQs are spread over: those of ``online`` that IRQs may go
    to (``allowed``, /proc/irq/default_smp_affinity: cores kept free of IRQs are not in
    it); all of them when that is unknown or leaves none."""
    cpus = sorted(online) or [0]
    if allowed is None:
        return cpus
    permitted = parse_cpu_list(allowed)
    return [c for c in cpus if c in permitted] or cpus


def spread_cpu(queue: int, cpus: Sequence[int]) -> int:
    """The CPU a NIC's queue ``queue`` gets when its queues are spread over ``cpus``
    (sorted): one each, round robin."""
    return cpus[queue % len(cpus)] if cpus else 0
