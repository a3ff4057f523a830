"""REST variant of :class:`serving.client.RecommenderClient` (TF Serving's JSON API on
port 8501, or ``python -m serving.server --rest_api_port 8501``), standard library only.

::

    from serving.rest_client import RestRecommenderClient
    c = RestRecommenderClient("http://127.0.0.1:8501", model="rearec")
    c.recommend([["12", "7"]], k=5)   # same results as the gRPC client

Requests use the columnar ``{"signature_name": ..., "inputs": {...}}`` format, so the
answers are ``{"outputs": {...}}``. JSON has no -inf: TF Serving writes it as
``-Infinity``, which :func:`json.loads` reads back as ``float("-inf")``.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

import numpy as np

from serving.client import RecommendationError, RetryPolicy, check_pad_to, pad_histories

_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
               500: "INTERNAL", 504: "DEADLINE_EXCEEDED"}


class RestRecommenderClient(RetryPolicy):
    def __init__(self, url: str = "http://127.0.0.1:8501", model: str = "rearec", timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.1, max_backoff: float = 2.0,
                 version: Optional[int] = None, pad_to: int = 0):
        super().__init__(timeout, retries, backoff, max_backoff)
        self.pad_to = check_pad_to(pad_to)
        self.url = url.rstrip("/")
        self.model = model
        self.version = version

    def _path(self, suffix: str = "") -> str:
        p = f"{self.url}/v1/models/{self.model}"
        if self.version is not None:
            p += f"/versions/{self.version}"
        return p + suffix

    def _request(self, url: str, body: Optional[dict], name: str) -> dict:
        data = None if body is None else json.dumps(body).encode()
        attempt = 0
        while True:
            attempt += 1
            req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                try:
                    msg = json.loads(e.read()).get("error", "")
                except Exception:  # noqa: BLE001
                    msg = e.reason
                code = _HTTP_CODES.get(e.code, f"HTTP_{e.code}")
                if code == "UNAVAILABLE" and attempt <= self.retries:
                    self._sleep(attempt)
                    continue
                raise RecommendationError(code, str(msg), name, attempt) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                    raise RecommendationError("DEADLINE_EXCEEDED", str(reason), name, attempt) from None
                if attempt <= self.retries:
                    self._sleep(attempt)
                    continue
                raise RecommendationError("UNAVAILABLE", str(reason), name, attempt) from None

    # ------------------------------------------------------------------ calls
    def predict(self, signature: str, inputs: Dict[str, Any]) -> Dict[str, Any]:
        def conv(v):
            v = np.asarray(v)
            return v.tolist()

        body = {"signature_name": signature, "inputs": {k: conv(v) for k, v in inputs.items()}}
        out = self._request(self._path(":predict"), body, f"Predict[{signature}]")["outputs"]
        if not isinstance(out, dict):  # a single output is returned bare
            out = {"output": out}
        return {k: np.asarray(v, dtype=object if _is_str(v) else None) for k, v in out.items()}

    def _common(self, histories, steps):
        hist, is_int = pad_histories(histories, self.pad_to)
        inputs: Dict[str, Any] = {"history": hist}
        if steps is not None:
            inputs["steps"] = int(steps)
        return inputs, is_int

    def recommend(self, histories, k: int = 10, exclude_history: bool = True,
                  steps: Optional[int] = None) -> Dict[str, Any]:
        inputs, is_int = self._common(histories, steps)
        inputs.update(k=int(k), exclude_history=bool(exclude_history))
        out = self.predict("recommend_int" if is_int else "recommend", inputs)
        out["scores"] = out["scores"].astype(np.float32)
        return out

    def embed(self, histories, steps: Optional[int] = None) -> Dict[str, Any]:
        inputs, is_int = self._common(histories, steps)
        out = self.predict("user_embedding_int" if is_int else "user_embedding", inputs)
        out["embedding"] = out["embedding"].astype(np.float32)
        return out

    def score(self, histories, candidates, steps: Optional[int] = None) -> Dict[str, Any]:
        inputs, is_int = self._common(histories, steps)
        cands, c_int = pad_histories(candidates)
        if c_int != is_int:
            raise ValueError("history and candidates must both be integer or both string ids")
        inputs["candidates"] = cands
        out = self.predict("score_items_int" if is_int else "score_items", inputs)
        out["scores"] = out["scores"].astype(np.float32)
        return out

    def metadata(self) -> dict:
        return self._request(self._path("/metadata"), None, "GetModelMetadata")

    def status(self) -> List[Dict[str, Any]]:
        out = self._request(self._path(), None, "GetModelStatus")
        return [{"version": int(s["version"]), "state": s["state"]} for s in out["model_version_status"]]


def _is_str(v) -> bool:
    while isinstance(v, list) and v:
        v = v[0]
    return isinstance(v, str)
