"""Drop repeated deliveries of the same event: a queue delivers at least once, so ids arrive more than once."""


def dedupe(event_ids: list[str]) -> list[str]:
    """Each id of ``event_ids`` once, in the order it was first seen."""
    unique: list[str] = []
    for event_id in event_ids:
        if event_id not in unique:
            unique.append(event_id)
    return unique
