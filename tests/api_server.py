"""A small JSON API for API-test probes: log in for a token, then read a profile with it."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

TOKEN = "t-5f3a9c"
PASSWORD = "correct horse"


def api_app() -> FastAPI:
    app = FastAPI()

    @app.post("/login")
    async def login(request: Request) -> Response:
        body: Any = await request.json()
        if body.get("user") != "ada" or body.get("password") != PASSWORD:
            return JSONResponse({"error": "bad credentials"}, status_code=401)
        return JSONResponse(
            {"token": TOKEN, "user": {"id": 7, "roles": ["admin", "ops"]}},
            headers={"X-Session": "fresh"},
        )

    @app.get("/profile")
    def profile(authorization: str | None = Header(default=None)) -> Response:
        if authorization != f"Bearer {TOKEN}":
            return JSONResponse({"error": "no token"}, status_code=401)
        return JSONResponse({"id": 7, "name": "Ada Lovelace", "plan": "pro"})

    @app.get("/slow")
    async def slow() -> Response:
        await asyncio.sleep(1)
        return JSONResponse({"late": True})

    @app.get("/moved")
    def moved() -> Response:
        return RedirectResponse("/profile", status_code=302)

    return app
