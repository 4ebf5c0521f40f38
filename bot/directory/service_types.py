"""The bot's service-type ids mapped to the directory's public "Service types" labels.

The bot asks "what type of service was it?" with its own short list (dialogs/intake.py);
the directory uses the regulator's public labels. The mapping is used only to *boost*
matching locations, never to filter them out: people often pick a neighbouring type (a
hospital's mental-health ward, a GP surgery that is also a clinic).
"""

from __future__ import annotations

from collections.abc import Iterable

SERVICE_TYPE_LABELS: dict[str, frozenset[str]] = {
    "hospital": frozenset(
        {
            "Hospital",
            "Hospitals - Mental health/capacity",
            "Rehabilitation (illness/injury)",
            "Rehabilitation (substance abuse)",
            "Long-term conditions",
        }
    ),
    "care_home": frozenset({"Residential homes", "Nursing homes"}),
    "home_care": frozenset(
        {"Homecare agencies", "Supported living", "Shared lives", "Supported housing"}
    ),
    "hospice": frozenset({"Hospice", "Home hospice care"}),
    "gp": frozenset({"Doctors/GPs", "Mobile doctors", "Urgent care centres"}),
    "dentist": frozenset({"Dentist"}),
    "community": frozenset(),  # every "Community services - ..." label, see below
    "clinic": frozenset({"Clinic", "Diagnosis/screening", "Hyperbaric chamber services"}),
    "mental_health": frozenset(
        {"Hospitals - Mental health/capacity", "Community services - Mental Health"}
    ),
    "ambulance": frozenset({"Ambulances"}),
    "other": frozenset(
        {
            "Phone/online advice",
            "Prison healthcare",
            "Blood and transplant service",
            "Specialist college service",
        }
    ),
}

_COMMUNITY_PREFIX = "community services - "


def matches_service_type(service_type: str | None, labels: Iterable[str]) -> bool:
    """True when any of a location's labels belongs to the bot's service type.

    Unknown ids (including "childrens_social_care", which the bot does not cover) match
    nothing, so they simply give no boost.
    """
    if not service_type:
        return False
    if service_type == "community":
        return any(label.lower().startswith(_COMMUNITY_PREFIX) for label in labels)
    wanted = SERVICE_TYPE_LABELS.get(service_type, frozenset())
    return any(label in wanted for label in labels)
