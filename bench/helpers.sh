# Small helpers every bench script uses (sourced by lib.sh and by the scripts that need no
# Postfix instance): a free loopback port, waiting for a port to answer, a time stamp.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
now() { date +%s.%N; }
