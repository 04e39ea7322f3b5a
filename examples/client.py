"""A third-party integration with the studio API: what a well-behaved client does.

- sends its key in ``X-API-Key`` (never in the URL);
- on ``429`` (and ``503``) waits for ``Retry-After`` and tries again, a bounded number of times;
- sends an ``Idempotency-Key`` on every write and reuses the same one on each retry, so a
  retried job submission never creates a second job;
- iterates list endpoints by following ``next_cursor`` until ``has_more`` is false;
- reads job progress from the Server-Sent Events stream.

Against the demo (``extapi-kit demo`` prints a key)::

    python examples/client.py --url http://127.0.0.1:8000 --key xk_live_...
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx

__all__ = ["ApiError", "StudioClient", "retry_after_seconds"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiError(Exception):
    """A non-2xx answer (the problem+json body is in ``problem``)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            self.problem: dict[str, Any] = response.json()
        except ValueError:
            self.problem = {"detail": response.text[:200]}
        super().__init__(f"{self.status}: {self.problem.get('detail') or self.problem}")


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` (delay seconds or an HTTP-date, RFC 9110 §10.2.3).

    Args:
        value: the header value, or None.
        now: the current epoch time (for HTTP-dates).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class StudioClient:
    """A small synchronous client for the studio's public API.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000``.
        key: the API key.
        max_retries: retries after a 429/503 before giving up.
        max_wait: the longest ``Retry-After`` honoured (seconds).
        transport: an httpx transport (tests).
        sleep: the sleep function (tests).
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        max_retries: int = 5,
        max_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers={"X-API-Key": key}, timeout=30, transport=transport
        )
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._sleep = sleep

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> StudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send a request, honouring Retry-After; writes carry one Idempotency-Key throughout.

        Args:
            method: the HTTP method.
            path: the path, e.g. ``/api/v1/jobs``.
            json: a JSON body.
            params: query parameters.
            idempotency_key: the key for a write (a random one by default).

        Raises:
            ApiError: the final answer was not 2xx.
        """
        headers = {}
        if method in WRITE_METHODS:
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        for attempt in range(self.max_retries + 1):
            response = self._http.request(method, path, json=json, params=params, headers=headers)
            if response.status_code in (429, 503) and attempt < self.max_retries:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is not None and wait <= self.max_wait:
                    self._sleep(wait)
                    continue
            break
        if response.is_error:
            raise ApiError(response)
        return response

    def iter_pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield every item of a list endpoint, following ``next_cursor``.

        Args:
            path: the list path.
            **params: filters, ``sort``, ``limit``.
        """
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = self.request("GET", path, params=query).json()
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return

    def projects(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield every project (``org_id``, ``status``, ``sort`` and ``limit`` accepted).

        Args:
            **params: query parameters.
        """
        return self.iter_pages("/api/v1/projects", **params)

    def submit_job(
        self, project_id: int, model: str, prompt: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Submit a generation job (safe to retry with the same ``idempotency_key``).

        Args:
            project_id: the project.
            model: the model id.
            prompt: the prompt.
            idempotency_key: your own key for this submission (random if omitted).
        """
        body = {"project_id": project_id, "model": model, "prompt": prompt}
        job: dict[str, Any] = self.request(
            "POST", "/api/v1/jobs", json=body, idempotency_key=idempotency_key
        ).json()
        return job

    def job_events(self, job_id: int) -> Iterator[dict[str, Any]]:
        """Yield the job's progress events (Server-Sent Events) until it finishes.

        Args:
            job_id: the job.
        """
        with self._http.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
            if response.is_error:
                response.read()
                raise ApiError(response)
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])


def main() -> None:
    """List projects, submit a job and follow its progress."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=os.environ.get("STUDIO_API_KEY"), required=False)
    args = parser.parse_args()
    if not args.key:
        parser.error("give --key or set STUDIO_API_KEY")
    with StudioClient(args.url, args.key) as client:
        projects = list(client.projects(limit=10, status="active"))
        print(f"{len(projects)} active projects; first: {projects[0]['name']}")
        job = client.submit_job(projects[0]["id"], "sdxl", "a red fox", idempotency_key="fox-1")
        print(f"job {job['id']} {job['status']}")
        for event in client.job_events(job["id"]):
            print(f"  {event['status']:10} {event['progress']:3}%")


if __name__ == "__main__":
    main()
