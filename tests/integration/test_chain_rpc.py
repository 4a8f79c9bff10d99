"""``market.chain.rpc.JsonRpc`` against a scripted JSON-RPC server on a real socket: answers
checked as web3 checks them, batches in request order, kept-alive connections the node dropped
replaced, and transport failures as ``ConnectionError``s that ``market.chain.retry`` retries."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from eth_account import Account
from requests.exceptions import HTTPError
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from market.chain.retry import with_retries
from market.chain.rpc import JsonRpc
from market.chain.tx import Transactor
from market.errors import RpcConnectionError, RpcUnavailable

pytestmark = pytest.mark.integration

Answer = Callable[[Any], tuple[int, Any]]
"""What the server does with a decoded request body: an HTTP status and a JSON body (bytes are
sent as they are)."""


class Node:
    """A JSON-RPC server whose answers a test scripts, counting the connections it accepted."""

    def __init__(self, answer: Answer, *, close_after_answer: bool = False) -> None:
        node = self
        self.answer = answer
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nodes answer

            def setup(self) -> None:
                node.connections += 1
                # Headers and body go out in two writes: no Nagle wait between them.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                super().setup()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, reply = node.answer(body)
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # a client that gave up waiting
                    self.close_connection = True
                    return
                if close_after_answer:  # drops the connection it said it would keep
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval: shutdown() waits for serve_forever to see it.
        serve = lambda: self.server.serve_forever(poll_interval=0.02)  # noqa: E731
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def start(answer: Answer, **kwargs: Any) -> Node:
        nodes.append(Node(answer, **kwargs))
        return nodes[-1]

    yield start
    for node in nodes:
        node.close()


def _rpc(url: str, timeout_s: float = 5.0) -> JsonRpc:
    return JsonRpc(Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s})))


def _result(value: Any) -> Answer:
    return lambda body: (200, {"jsonrpc": "2.0", "id": body["id"], "result": value})


def _error(error: dict[str, Any]) -> Answer:
    return lambda body: (200, {"jsonrpc": "2.0", "id": body["id"], "error": error})


def test_requests_share_one_kept_alive_connection(serve: Callable[..., Node]) -> None:
    node = serve(_result("0x2a"))
    rpc = _rpc(node.url)
    assert rpc.lean
    assert [rpc.request("eth_blockNumber", []) for _ in range(5)] == ["0x2a"] * 5
    assert node.connections == 1
    rpc.close()


def test_a_connection_the_node_dropped_is_replaced_at_once(serve: Callable[..., Node]) -> None:
    node = serve(_result("0x1"), close_after_answer=True)
    rpc = _rpc(node.url)
    assert [rpc.request("eth_chainId", []) for _ in range(3)] == ["0x1"] * 3
    assert node.connections == 3  # each request after the first found its connection gone


def test_an_error_answer_raises_web3s_error_with_the_nodes_message(
    serve: Callable[..., Node],
) -> None:
    node = serve(_error({"code": -32000, "message": "nonce too low"}))
    with pytest.raises(Web3RPCError, match="nonce too low"):
        _rpc(node.url).request("eth_sendRawTransaction", ["0x00"])


def test_a_reverted_call_raises_contract_logic_error_with_its_data(
    serve: Callable[..., Node],
) -> None:
    data = "0x4e487b710000000000000000000000000000000000000000000000000000000000000011"
    node = serve(_error({"code": 3, "message": "execution reverted", "data": data}))
    rpc = _rpc(node.url)
    with pytest.raises(ContractLogicError) as err:
        rpc.request("eth_estimateGas", [{"to": "0x" + "11" * 20}])
    assert err.value.data == data
    with pytest.raises(ContractLogicError):
        rpc.request("eth_call", [{"to": "0x" + "11" * 20}, "latest"])


def test_a_batch_is_answered_in_request_order_whatever_order_the_node_answers(
    serve: Callable[..., Node],
) -> None:
    def reversed_answers(body: Any) -> tuple[int, Any]:
        return 200, [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]} for r in body][
            ::-1
        ]

    node = serve(reversed_answers)
    answers = _rpc(node.url).batch([("echo", [n]) for n in range(5)])
    assert isinstance(answers, list)
    assert [a["result"] for a in answers] == [0, 1, 2, 3, 4]


def test_an_http_error_status_raises_http_error(serve: Callable[..., Node]) -> None:
    node = serve(lambda body: (503, {"message": "overloaded"}))
    with pytest.raises(HTTPError, match="503"):
        _rpc(node.url).request("eth_blockNumber", [])


def test_a_node_that_does_not_answer_in_time_is_a_connection_error_sent_once(
    serve: Callable[..., Node],
) -> None:
    release = threading.Event()
    received: list[str] = []

    def stuck_after_the_first(body: Any) -> tuple[int, Any]:
        received.append(body["method"])
        if len(received) > 1:
            release.wait(10)
        return _result("0x0")(body)

    node = serve(stuck_after_the_first)
    rpc = _rpc(node.url, timeout_s=0.2)
    try:
        assert rpc.request("eth_chainId", []) == "0x0"
        with pytest.raises(RpcConnectionError, match="timed out"):
            rpc.request("eth_blockNumber", [])  # on the kept-alive connection: not sent again
    finally:
        release.set()
    assert (received, node.connections) == (["eth_chainId", "eth_blockNumber"], 1)


def test_a_refused_endpoint_is_unavailable_after_the_retry_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    rpc = _rpc(f"http://127.0.0.1:{port}")
    with pytest.raises(RpcUnavailable) as err:
        with_retries(
            lambda: rpc.request("eth_blockNumber", []),
            endpoint="node",
            deadline_s=0.2,
            first_delay_s=0.01,
        )
    assert isinstance(err.value.__cause__, RpcConnectionError)


def test_a_provider_subclass_sends_through_its_own_make_request(
    serve: Callable[..., Node],
) -> None:
    node = serve(_result("0x7"))
    sent: list[str] = []

    class Counting(HTTPProvider):
        def make_request(self, method: Any, params: Any) -> Any:
            sent.append(str(method))
            return super().make_request(method, params)

    rpc = JsonRpc(Web3(Counting(node.url)))
    assert not rpc.lean
    assert rpc.request("eth_chainId", []) == "0x7"
    assert sent == ["eth_chainId"]


def test_a_receipt_a_node_answers_not_found_as_an_error_is_none(
    serve: Callable[..., Node],
) -> None:
    def node_answer(body: Any) -> tuple[int, Any]:
        if body["method"] == "eth_getTransactionReceipt":  # as some nodes say "not mined"
            return _error({"code": -32000, "message": "transaction not found"})(body)
        return _result("0x7a69" if body["method"] == "eth_chainId" else "0x0")(body)

    node = serve(node_answer)
    w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 5}))
    tx = Transactor(w3, Account.from_key(b"\x01" * 32))
    assert (tx.chain_id, tx.receipt(b"\x11" * 32)) == (31337, None)


def test_an_answer_that_is_not_json_raises_json_decode_error_as_web3_does(
    serve: Callable[..., Node],
) -> None:
    node = serve(lambda body: (200, b"<html>bad gateway</html>"))
    with pytest.raises(json.JSONDecodeError, match="bad gateway"):
        _rpc(node.url).request("eth_blockNumber", [])


def test_a_node_behind_a_proxy_from_the_environment_is_spoken_to_through_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _rpc("http://node.invalid:8545").lean
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")
    assert not _rpc("http://node.invalid:8545").lean
    monkeypatch.setenv("no_proxy", "node.invalid")
    assert _rpc("http://node.invalid:8545").lean
