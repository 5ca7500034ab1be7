"""Misbehaving OTLP backends on 127.0.0.1, for bench/exit/run.sh.

    python3 backends.py PORTFILE

Listens on four ports and writes `name port` lines to PORTFILE:
  silent   accepts connections and never answers
  busy     answers every request 503 with Retry-After: 1
  limited  answers every request 429
  closed   a port nothing listens on (bound, then closed)
"""
import socket
import sys
import threading


def serve(sock, answer):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle, args=(conn, answer), daemon=True).start()


def handle(conn, answer):
    with conn:
        if answer is None:
            # Read and hold the connection without a word.
            while conn.recv(65536):
                pass
            return
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        try:
            while True:
                conn.sendall(answer)
                data = conn.recv(65536)
                if not data:
                    return
        except OSError:
            return


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def main():
    answers = {
        "silent": None,
        "busy": b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
        "limited": b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n",
    }
    lines = []
    for name, answer in answers.items():
        s = listener()
        lines.append(f"{name} {s.getsockname()[1]}")
        threading.Thread(target=serve, args=(s, answer), daemon=True).start()
    closed = listener()
    lines.append(f"closed {closed.getsockname()[1]}")
    closed.close()
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(lines) + "\n")
    threading.Event().wait()


main()
