"""The bare FastAPI endpoint bench/reads.py compares the service with: FastAPI's own first
example, served by uvicorn exactly as `mlops serve` serves the app (same venv, same logging).

    python bench/bare_app.py PORT
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"Hello": "World"}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
