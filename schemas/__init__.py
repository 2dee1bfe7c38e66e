# keeps the package importable for importlib.resources
