"""A gRPC server that answers every unary call with its request's bytes: the raw RPC baseline's far end.

Run as its own process (`python -m bench.echo --port N`), as a site would be, so the baseline is
one process pair like the hub's. No protobuf decoding: what is measured is gRPC itself.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

METHOD = "/bench.Echo/Echo"


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])

    async def echo(request: bytes, _context: object) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler})])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
