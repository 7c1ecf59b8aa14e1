"""textstats: word counts, the package examples/python/remotemedia.py ships
to a provider as a wheel (providers install it with no network)."""

import collections
import re

__version__ = "1.0.0"


def summary(text: str) -> dict:
    """Words, distinct words and the three most common ones."""
    words = re.findall(r"[a-z']+", text.lower())
    return {"words": len(words), "distinct": len(set(words)),
            "top": collections.Counter(words).most_common(3)}
