"""The small library generated scripts import (model loading, scoring, training status)."""
