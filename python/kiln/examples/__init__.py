"""Models bundled with Kiln: built from config dataclasses with seeded random weights."""
