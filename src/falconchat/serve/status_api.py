"""`serve`'s routes that describe the server, as TGI's: `/info`, `/health` (and `GET /`, `/ping`,
the probes TGI answers there) and `/metrics`. They stay open when `--api-key` is set."""

from __future__ import annotations

from falconchat import __version__
from falconchat.serve.relay import Relay


class StatusAPI:
    def __init__(self, relay: Relay):
        self.relay = relay

    def add_to(self, app) -> None:
        app.router.add_get("/info", self.info)
        app.router.add_get("/health", self.health)
        app.router.add_get("/", self.health)  # as TGI: a load balancer's probe of the root
        app.router.add_get("/ping", self.health)  # SageMaker's health route, which TGI answers
        app.router.add_get("/metrics", self.metrics)

    async def metrics(self, request):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        text = self.relay.metrics.text()
        return web.Response(text=text, content_type="text/plain", headers={"Cache-Control": "no-cache"})

    async def health(self, request):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        return web.Response(status=200)

    async def info(self, request):
        from aiohttp import web  # noqa: PLC0415 (heavy: aiohttp)

        relay = self.relay
        limits = relay.limits
        return web.json_response(
            {
                "model_id": relay.model_id,
                "model_sha": None,
                "model_dtype": "gguf",
                "model_device_type": "cpu",
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": relay.engine.max_concurrent,
                "max_batch_size": relay.engine.workers,  # as TGI's router reported it (requests decoded together)
                "max_best_of": 1,
                "max_stop_sequences": limits.max_stop_sequences,
                "max_input_tokens": limits.max_input_tokens,
                "max_input_length": limits.max_input_tokens,
                "max_total_tokens": limits.max_total_tokens,
                "max_client_batch_size": 1,
                "validation_workers": 1,  # required by TGI's Info schema; validation runs in the handlers
                "router": "falconchat-serve",
                "version": __version__,
                "sha": None,
                "docker_label": None,
            }
        )
