# Shared by scripts/kafka-local and scripts/sqs-local: a JVM server from jars on Maven Central,
# started in its own session on 127.0.0.1, stopped without leaving a process behind.
# The caller defines die() and say() (messages prefixed with its own name) before sourcing this.

# need_java WHAT: Java 17 or later on PATH, else a message saying what needs it.
need_java() {
  command -v java >/dev/null 2>&1 || die "Java was not found on PATH: $1 needs Java 17 or later (e.g. apt-get install openjdk-17-jre-headless)."
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/.*java.specification.version = \([0-9]*\).*/\1/p')"
  [[ -n "$major" && "$major" -ge 17 ]] || die "Java $major found, but $1 needs Java 17 or later."
}

# fetch_maven_jars POM LIBS MARKER WHAT: the runtime jars of POM into LIBS, once (MARKER is a jar
# that is there when they are). Atomic: a failed download leaves no half-filled LIBS.
fetch_maven_jars() {
  local pom="$1" libs="$2" marker="$3" what="$4"
  [[ -f "$libs/$marker" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) was not found on PATH: it fetches the $what jars from Maven Central (e.g. apt-get install maven)."
  say "fetching $what jars from Maven Central into $libs"
  local tmp="$libs.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
    tail -n 20 "$tmp.mvn.log" >&2
    rm -rf "$tmp" "$tmp.mvn.log"
    die "could not download the $what jars from Maven Central (mvn failed; log above). Check that Maven Central is reachable."
  fi
  rm -f "$tmp.mvn.log"
  mkdir -p "$(dirname "$libs")"
  rm -rf "$libs"; mv "$tmp" "$libs"
}

# free_port: a TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# port_bindable PORT: true when 127.0.0.1:PORT can be listened on (TIME-WAIT sockets allowed, as the JVM does).
port_bindable() {
  python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null
}

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL and wait until it is gone.
stop_pid() {
  local pid="$1" seconds="$2"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((seconds * 5))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  say "pid $pid did not stop within ${seconds}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
