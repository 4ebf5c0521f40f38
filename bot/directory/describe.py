"""Short human labels for directory locations, e.g. on a choice button."""

from __future__ import annotations

from bot.ports import DirectoryLocation

#: Longest label (characters); messaging apps truncate long button labels.
MAX_LABEL = 120


def describe(location: DirectoryLocation) -> str:
    """A label like "Sunrise Lodge — 5 High Street, Gloucester, GL1 2AB".

    The published address joins its parts with bare commas ("5 High Street,Gloucester"); it
    is re-spaced here. Without an address or postcode the local authority says at least
    which area the service is in, which is what a person needs to tell two namesakes apart.
    """
    name = " ".join(location.name.split()) or location.location_id
    parts = [part.strip() for part in location.address.split(",") if part.strip()]
    if location.postcode.strip():
        parts.append(location.postcode.strip())
    if not parts and location.local_authority.strip():
        parts.append(location.local_authority.strip())
    label = f"{name} — {', '.join(parts)}" if parts else name
    if len(label) > MAX_LABEL:
        label = label[: MAX_LABEL - 1].rstrip(" ,") + "…"
    return label
