"""The core: WCT maths, streamed moments, the tile planner, the memory plan, the backend
protocol and the tiled stylizer. Imports nothing above it (models, runtimes, application)."""
from .stylizer import Stylized, Stylizer

__all__ = ["Stylized", "Stylizer"]
