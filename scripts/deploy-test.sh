#!/usr/bin/env bash
# Deployment test: builds the image from the repository's Dockerfile and runs
# the Helm chart on a real single-node Kubernetes (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, containerd, runc), then
# scrapes it with Prometheus. Facts and host quirks behind each step:
# /work/shared/REAL-DEPLOY.md (summarised in deploy/k8s/README.md).
#
#   scripts/deploy-test.sh [LEVEL]
#
#   image       the Dockerfile built offline with podman; image config; the
#               container run as the chart runs it, /metrics against ss
#   apiserver   etcd + kube-apiserver: Prometheus Operator CRDs, every
#               chart ci/*.yaml rendering accepted by the server
#   node        apiserver + a node: helm install, DaemonSet Ready, listeners,
#               pod mode labels, Pod Security baseline refusal
#   prometheus  node + Prometheus scraping the pod, rules, dashboards
#   all         (default) image, then prometheus
#   clean       stops a cluster left up by KEEP=1 and checks the host
#
# KEEP=1 leaves the cluster up (kubectl: see the message at the end).
# DEPLOY_DIR (default /var/tmp/tcpstate-deploy) keeps binaries, images and
# caches between runs; each run's state lives in DEPLOY_DIR/run.
#
# Everything runs inside the network namespace tcpstate-deploy (a bridge, no
# uplink) and, for the cluster, a private mount namespace; podman's storage
# and configuration live under DEPLOY_DIR. The host's sysctls, iptables/nft
# rules and mounts are recorded before and compared after: a difference
# fails the run.
set -Eeuo pipefail
# go.mod names the toolchain (a newer Go 1.26 patch); let go fetch it, and
# build the golang stand-in image from it.
export GOTOOLCHAIN=auto
trap 'echo "deploy-test: line ${LINENO}: command failed (exit $?): ${BASH_COMMAND}" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="${ROOT}/scripts/deploy-test.sh"
CHART="${ROOT}/deploy/helm/tcpstate-exporter"
D="${DEPLOY_DIR:-/var/tmp/tcpstate-deploy}"
RUN="${D}/run"
BIN="${D}/bin"
NS=tcpstate-deploy
NODE_IP=10.200.0.1
NODE=deploy-node
IMAGE=localhost/tcpstate-exporter:deploy-test
DEMO_IMAGE=localhost/tcpstate-deploy-demo:1
PAUSE_IMAGE=localhost/tcpstate-deploy-pause:1
KEEP="${KEEP:-0}"

log() { printf '%s deploy-test: %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf '%s deploy-test: FAIL: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every half second.
wait_for() {
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      log "timed out after ${limit}s waiting for ${what}; last attempt:"
      "$@" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

podman_env() {
  export CONTAINERS_CONF="${D}/podman/containers.conf"
  export CONTAINERS_STORAGE_CONF="${D}/podman/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="${D}/podman/registries.conf"
}

# ---------------------------------------------------------------- host side

install_packages() {
  local want=(podman buildah runc conmon containernetworking-plugins
    containerd etcd-server busybox-static iptables nftables iproute2 jq
    curl openssl gcc libc6-dev prometheus util-linux)
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    "${ROOT}/scripts/apt-install.sh" "${missing[@]}"
  fi
  # Debian starts these as services where it can; the test runs its own.
  systemctl stop prometheus containerd etcd >/dev/null 2>&1 || true
  export PATH="${BIN}:$PATH:$(go env GOPATH)/bin"
  if ! command -v helm >/dev/null; then
    log "installing helm v3.22.0"
    (cd /tmp && go install helm.sh/helm/v3/cmd/helm@v3.22.0)
  fi
}

# The Kubernetes binaries come from the nested module deploy/k8s (its own
# go.sum; the exporter's module graph never sees Kubernetes). go build
# relinks every time, so a stamp of go.mod/go.sum skips the build when the
# binaries already match them.
build_kubernetes() {
  local stamp
  stamp=$(cat "${ROOT}/deploy/k8s/go.mod" "${ROOT}/deploy/k8s/go.sum" | sha256sum | cut -c1-16)
  if [[ -f "${BIN}/.stamp" && "$(cat "${BIN}/.stamp")" == "$stamp" ]]; then
    local b missing=0
    for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
      [[ -x "${BIN}/$b" ]] || missing=1
    done
    ((missing)) || return 0
  fi
  log "building Kubernetes from deploy/k8s (several minutes cold)"
  mkdir -p "$BIN"
  local t=$SECONDS
  (cd "${ROOT}/deploy/k8s" && go build -trimpath -o "${BIN}/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kubectl)
  echo "$stamp" >"${BIN}/.stamp"
  log "Kubernetes built in $((SECONDS - t))s"
}

# Host state that the test must leave as it found it.
host_state() {
  local out=$1
  mkdir -p "$out"
  sysctl -a 2>/dev/null |
    grep -Ev '^(fs\.(dentry-state|file-nr|inode-nr|inode-state|quota\.)|kernel\.(ns_last_pid|random\.)|net\.netfilter\.nf_conntrack_count)' \
      >"${out}/sysctl"
  { iptables-save 2>/dev/null || true; } | sed -E -e '/^#/d' -e 's/\[[0-9]+:[0-9]+\]//' >"${out}/iptables"
  { ip6tables-save 2>/dev/null || true; } | sed -E -e '/^#/d' -e 's/\[[0-9]+:[0-9]+\]//' >"${out}/ip6tables"
  nft list ruleset 2>/dev/null | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/' >"${out}/nft"
  # Mount point, root, type, source and options. Named network namespaces
  # of other programs (other tests on the machine) come and go under
  # /run/netns; ours is checked by name.
  awk '{sep=0; for (i=7;i<=NF;i++) if ($i=="-") {sep=i; break}
        print $5, $4, $(sep+1), $(sep+2), $6}' /proc/1/mountinfo |
    awk -v ns="/run/netns/${NS}" '$1 !~ "^/run/netns/" || $1 == ns' | sort >"${out}/mounts"
  ip -o link show | awk -F': ' '{print $2}' | grep -v '@' | sort >"${out}/links" || true
}

check_host_state() {
  host_state "${RUN}/host-after"
  local bad=0 f
  for f in sysctl iptables ip6tables nft mounts links; do
    if ! diff -u "${RUN}/host-before/$f" "${RUN}/host-after/$f" >"${RUN}/host-diff-$f" 2>&1; then
      log "host ${f} changed:"
      head -40 "${RUN}/host-diff-$f" >&2
      bad=1
    fi
  done
  if ((bad)); then
    fail "the host's state differs from before the run"
  fi
  log "host sysctls ($(wc -l <"${RUN}/host-after/sysctl")), iptables, nft, mounts and links unchanged"
}

# Processes started by the run: everything in the test's network namespace
# or its private mount namespace, and every container in the kubelet's
# cgroups. Killed, then the kubelet's cgroups removed.
kill_cluster() {
  local ids=() f
  for f in netns mntns stage-mntns; do
    [[ -s "${RUN}/$f" ]] && ids+=("$(cat "${RUN}/$f")")
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local pids=()
    for f in "${ids[@]}"; do
      # -lname takes a pattern: "net:[4026531833]" becomes "net:?4026531833?".
      mapfile -t -O "${#pids[@]}" pids < <(find /proc/[0-9]*/ns -maxdepth 1 \( -name net -o -name mnt \) \
        -lname "${f//[\[\]]/?}" 2>/dev/null | cut -d/ -f3 | grep -vx -e "$$" -e "$BASHPID" | sort -u)
    done
    for f in /sys/fs/cgroup/pids/kubepods/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/cgroup.procs \
      /sys/fs/cgroup/pids/kubepods/*/*/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/*/*/cgroup.procs; do
      [[ -f "$f" ]] && mapfile -t -O "${#pids[@]}" pids <"$f"
    done
    ((${#pids[@]} == 0)) && break
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  done
  local h
  for h in /sys/fs/cgroup/*/kubepods; do
    if [[ -d "$h" ]]; then find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
  # The named handle was mounted in the run's private mount namespace; on
  # the host only its empty mount point remains.
  if [[ -e "/run/netns/${NS}" ]] && ! mountpoint -q "/run/netns/${NS}"; then rm -f "/run/netns/${NS}"; fi
}

cleanup_host() {
  local rc=$?
  trap - EXIT ERR
  set +e
  if [[ "$KEEP" == 1 && -s "${RUN}/kube-apiserver.pid" ]]; then
    log "KEEP=1: the cluster stays up. Use it with:"
    log "  nsenter -t $(cat "${RUN}/kube-apiserver.pid") -n ${BIN}/kubectl --kubeconfig ${RUN}/pki/admin.kubeconfig get pods -A"
    log "stop it and check the host with: scripts/deploy-test.sh clean"
    exit "$rc"
  fi
  kill_cluster
  if [[ -d "${RUN}/host-before" ]]; then
    check_host_state || rc=1
  fi
  if ((rc == 0)); then log "PASS"; else log "FAILED (exit ${rc}); logs in ${RUN}/logs"; fi
  exit "$rc"
}

setup_netns() {
  ip netns add "$NS"
  ip netns exec "$NS" readlink /proc/self/ns/net >"${RUN}/netns"
  ip -n "$NS" link set lo up
  # The node's address: a bridge with no port and no uplink.
  ip -n "$NS" link add tsnode0 type bridge
  ip -n "$NS" addr add "${NODE_IP}/24" dev tsnode0
  ip -n "$NS" link set tsnode0 up
  # Service addresses (no kube-proxy; see the DNAT rule in inner) need a
  # route for the DNAT in OUTPUT to see the packet.
  ip -n "$NS" route add 10.96.0.0/16 dev tsnode0
}

# ----------------------------------------------------------------- level 1

podman_config() {
  mkdir -p "${D}/podman/net" "${D}/podman/tmp"
  cat >"${D}/podman/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "${D}/podman/storage"
runroot = "${D}/podman/runroot"
EOF
  cat >"${D}/podman/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${D}/podman/events.log"
tmp_dir = "${D}/podman/tmp"
volume_path = "${D}/podman/volumes"
static_dir = "${D}/podman/libpod"

[network]
network_backend = "cni"
network_config_dir = "${D}/podman/net"
cni_plugin_dirs = ["/usr/lib/cni"]
EOF
  cat >"${D}/podman/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "disabled"
EOF
  podman_env
}

# Stand-ins for the two base images the Dockerfile names, built from local
# files only: golang (the Go tree this repository builds with, busybox, CA
# certificates) and distroless static nonroot (passwd, group, nsswitch, CA
# certificates, /tmp).
base_images() {
  local golang distroless goroot gover
  golang=$(awk 'toupper($1)=="FROM" {for (i=2;i<=NF;i++) if ($i !~ /^--/) {print $i; exit}}' "${ROOT}/Dockerfile")
  distroless=$(awk 'toupper($1)=="FROM" {for (i=2;i<=NF;i++) if ($i !~ /^--/) {n=$i}} END {print n}' "${ROOT}/Dockerfile")
  [[ "$golang" == golang:* ]] || fail "Dockerfile's first FROM is ${golang}, expected golang:*"
  # go env inside the repository: a toolchain line in go.mod switches Go.
  goroot=$(cd "$ROOT" && go env GOROOT)
  gover=$(cd "$ROOT" && go env GOVERSION)
  local want="${gover} ${goroot}"
  if [[ "$(podman image inspect --format '{{index .Config.Labels "tcpstate.deploy.source"}}' "docker.io/library/${golang}" 2>/dev/null)" != "$want" ]]; then
    log "stand-in docker.io/library/${golang} from ${goroot} (${gover})"
    local r="${D}/rootfs-golang"
    rm -rf "$r"; mkdir -p "$r"/{bin,usr/local,etc/ssl/certs,tmp,root,go/pkg/mod,src}
    chmod 1777 "$r/tmp"
    cp -a "$goroot" "$r/usr/local/go"
    cp /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list); do [[ -e "$r/bin/$a" ]] || ln -s busybox "$r/bin/$a"; done
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    podman rmi -f "docker.io/library/${golang}" >/dev/null 2>&1 || true
    tar -C "$r" -c . | podman import --quiet \
      --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV GOPATH=/go' --change 'ENV HOME=/root' --change 'ENV GOTOOLCHAIN=local' \
      --change 'WORKDIR /go' --change "LABEL tcpstate.deploy.source=\"${want}\"" \
      - "docker.io/library/${golang}" >/dev/null
    rm -rf "$r"
  fi
  if ! podman image exists "$distroless"; then
    log "stand-in ${distroless}"
    local r="${D}/rootfs-distroless"
    rm -rf "$r"; mkdir -p "$r"/{etc/ssl/certs,tmp,home/nonroot}
    chmod 1777 "$r/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$r/etc/group"
    printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
    chown 65532:65532 "$r/home/nonroot"
    tar -C "$r" -c . | podman import --quiet --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$distroless" >/dev/null
    rm -rf "$r"
  fi
}

build_image() {
  podman_config
  base_images
  # The module cache is filled on the host (the proxy is reachable there)
  # and mounted into the offline build.
  (cd "$ROOT" && go mod download)
  mkdir -p "${D}/image-gocache"
  local t=$SECONDS
  podman build --pull=never --network=none --quiet \
    --build-arg TARGETOS=linux --build-arg TARGETARCH=amd64 \
    -v "$(cd "$ROOT" && go env GOMODCACHE):/go/pkg/mod" \
    -v "${D}/image-gocache:/root/.cache/go-build" \
    -t "$IMAGE" -f "${ROOT}/Dockerfile" "$ROOT" >"${RUN}/logs/image-build.log" 2>&1 ||
    { tail -30 "${RUN}/logs/image-build.log" >&2; fail "podman build of the Dockerfile"; }
  log "image built in $((SECONDS - t))s: $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
}

check_image_config() {
  local user ports entry
  user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
  ports=$(podman image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE")
  entry=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
  [[ "$user" == "65534:65534" || "$user" == "65534" ]] || fail "image user is '${user}', want 65534"
  jq -e 'has("9874/tcp")' <<<"$ports" >/dev/null || fail "image exposes ${ports}, want 9874/tcp"
  [[ "$entry" == '["/bin/tcpstate-exporter"]' ]] || fail "image entrypoint is ${entry}, want the exec form [\"/bin/tcpstate-exporter\"]"
  log "image config: user ${user}, ports ${ports}, entrypoint ${entry}"
}

# metric_ports METRICS_FILE: the listening ports the exporter reports for
# the host (the pod's own) network namespace.
metric_ports() {
  grep '^tcpstate_listener_sockets{' "$1" | grep -v 'netns="[^h]' |
    sed -E 's/.*port="([0-9]+)".*/\1/' | sort -un
}

# ss_ports: the listening TCP ports in the current network namespace.
ss_ports() {
  ss -Htln | awk '{n=split($4, a, ":"); print a[n]}' | sort -un
}

# listeners_match URL NETNS_CMD...: /metrics lists exactly the ports ss sees.
listeners_match() {
  local url=$1; shift
  "$@" curl -sf "$url" -o "${RUN}/metrics.txt" || return 1
  metric_ports "${RUN}/metrics.txt" >"${RUN}/ports.metrics"
  "$@" bash -c "$(declare -f ss_ports); ss_ports" >"${RUN}/ports.ss"
  [[ -s "${RUN}/ports.ss" ]] && diff -q "${RUN}/ports.metrics" "${RUN}/ports.ss" >/dev/null
}

level_image() {
  log "== level image: Dockerfile, image config, container as the chart runs it"
  build_image
  check_image_config
  # A few listeners of our own next to the exporter's.
  local p
  mkdir -p "${RUN}/www"
  for p in 18081 18082 18083; do
    ip netns exec "$NS" setsid /bin/busybox httpd -f -p "127.0.0.1:$p" -h "${RUN}/www" >/dev/null 2>&1 &
  done
  # As the chart runs it in host mode: non-root, read-only root, no
  # capabilities, no privilege escalation; the node's network (here the
  # test's namespace).
  podman rm -f -t 0 tcpstate-deploy-image >/dev/null 2>&1 || true
  podman run -d --name tcpstate-deploy-image --pull=never \
    --network "ns:/run/netns/${NS}" --user 65534:65534 --read-only \
    --cap-drop ALL --security-opt no-new-privileges \
    "$IMAGE" --web.listen-address=:9874 --netns=host >/dev/null
  wait_for 30 "the container's /-/ready" ip netns exec "$NS" curl -sf http://127.0.0.1:9874/-/ready ||
    { podman logs tcpstate-deploy-image >&2; fail "container not ready"; }
  wait_for 20 "/metrics listeners to match ss" listeners_match http://127.0.0.1:9874/metrics ip netns exec "$NS" ||
    { diff "${RUN}/ports.metrics" "${RUN}/ports.ss" >&2; fail "container /metrics listeners differ from ss"; }
  log "container /metrics lists the listening ports ss shows: $(tr '\n' ' ' <"${RUN}/ports.ss")"
  local caps
  caps=$(podman exec tcpstate-deploy-image cat /proc/1/status 2>/dev/null | awk '/^CapEff/ {print $2}') || true
  podman logs tcpstate-deploy-image >"${RUN}/logs/image-container.log" 2>&1
  podman rm -f -t 0 tcpstate-deploy-image >/dev/null
  for p in $(ip netns pids "$NS"); do kill "$p" 2>/dev/null || true; done
  log "level image passed"
}

# ------------------------------------------------------------ the cluster

# Inside: the test's network namespace and a private mount namespace.
inner() {
  local level=$1
  readlink /proc/self/ns/mnt >"${RUN}/mntns"
  trap inner_cleanup EXIT
  mkdir -p "${RUN}/logs"
  # Fixed paths of kubelet, containerd and CNI (/var/lib/kubelet,
  # /var/log/pods, /run/containerd, /var/lib/cni, /run/netns) land in
  # directories of this run; the host's stay untouched.
  mkdir -p "${RUN}/root/run" "${RUN}/root/varlib" "${RUN}/root/varlog"
  mount --bind "${RUN}/root/run" /run
  mkdir -p /run/netns
  mount --bind "${RUN}/root/varlib" /var/lib
  mount --bind "${RUN}/root/varlog" /var/log
  # The kubelet sets these global sysctls; it gets copies holding the
  # values it wants, so the VM's stay as they are.
  mkdir -p "${RUN}/sysctl"
  local kv k v
  for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
    kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    k=${kv%=*} v=${kv#*=}
    echo "$v" >"${RUN}/sysctl/${k//\//.}"
    mount --bind "${RUN}/sysctl/${k//\//.}" "/proc/sys/$k"
  done
  # Pod mode mounts /run/netns with HostToContainer propagation.
  mount --make-rshared /
  # No kube-proxy: the kubernetes Service address goes to the apiserver.
  iptables -t nat -A OUTPUT -d 10.96.0.1/32 -p tcp --dport 443 -j DNAT --to-destination "${NODE_IP}:6443"

  start_apiserver
  level_apiserver
  [[ "$level" == apiserver ]] && return
  start_node
  level_node
  [[ "$level" == node ]] && return
  level_prometheus
}

inner_cleanup() {
  local rc=$?
  trap - EXIT
  if [[ "$KEEP" == 1 ]]; then exit "$rc"; fi
  if ((rc != 0)) && [[ -x "${BIN}/kubectl" && -f "${RUN}/pki/admin.kubeconfig" ]]; then
    kubectl get pods -A -o wide >&2 2>/dev/null || true
    kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -20 >&2 || true
  fi
  exit "$rc"
}

bg() { # bg NAME COMMAND...: a daemon of the run, logging to logs/NAME.log
  local name=$1; shift
  setsid "$@" >"${RUN}/logs/${name}.log" 2>&1 </dev/null &
  echo $! >"${RUN}/${name}.pid"
}

pki() {
  local p="${RUN}/pki"
  mkdir -p "$p"
  cd "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=deploy-test-ca -keyout ca.key -out ca.crt 2>/dev/null
  cert() { # cert NAME SUBJECT [SANS]
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    if [[ -n "${3:-}" ]]; then printf 'subjectAltName=%s\n' "$3" >"$1.ext"; else : >"$1.ext"; fi
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  cert apiserver /CN=kube-apiserver "IP:${NODE_IP},IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=deploy-admin"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cat >admin.kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters:
- name: deploy
  cluster: {server: "https://${NODE_IP}:6443", certificate-authority: ${p}/ca.crt}
users:
- name: admin
  user: {client-certificate: ${p}/admin.crt, client-key: ${p}/admin.key}
contexts:
- name: deploy
  context: {cluster: deploy, user: admin}
current-context: deploy
EOF
  cd - >/dev/null
}

start_apiserver() {
  pki
  export KUBECONFIG="${RUN}/pki/admin.kubeconfig"
  local p="${RUN}/pki" t=$SECONDS
  bg etcd etcd --name deploy --data-dir "${RUN}/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster deploy=http://127.0.0.1:2380
  bg kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$NODE_IP" \
    --cert-dir="${RUN}/apiserver" --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-cluster-ip-range=10.96.0.0/16 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --kubelet-client-certificate="$p/admin.crt" --kubelet-client-key="$p/admin.key" \
    --kubelet-preferred-address-types=InternalIP --profiling=false
  wait_for 120 "kube-apiserver /readyz" kubectl get --raw /readyz ||
    { tail -20 "${RUN}/logs/kube-apiserver.log" >&2; fail "kube-apiserver not ready"; }
  log "etcd and kube-apiserver ready in $((SECONDS - t))s"
  bg kube-controller-manager kube-controller-manager --kubeconfig="$KUBECONFIG" \
    --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
    --leader-elect=false --cert-dir="${RUN}/kcm" --bind-address=127.0.0.1 \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=false
  bg kube-scheduler kube-scheduler --kubeconfig="$KUBECONFIG" \
    --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
    --leader-elect=false --cert-dir="${RUN}/scheduler" --bind-address=127.0.0.1
}

# The Prometheus Operator CRDs, generated with controller-gen (nested
# module deploy/crds) from the operator's Go types at the version the
# exporter requires; a mismatch of the two versions fails the run.
operator_crds() {
  local want have out="${RUN}/crds"
  want=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring)
  have=$(cd "${ROOT}/deploy/crds" && go list -m -f '{{.Version}}' github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring)
  [[ "$want" == "$have" ]] ||
    fail "deploy/crds requires prometheus-operator/pkg/apis/monitoring ${have}, the exporter ${want}: update deploy/crds/go.mod"
  mkdir -p "$out"
  (cd "${ROOT}/deploy/crds" && go tool controller-gen crd:crdVersions=v1 \
    paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 "output:crd:dir=${out}") >&2
  echo "$want" >"${out}/VERSION"
  echo "$out"
}

level_apiserver() {
  log "== level apiserver: CRDs and every ci/*.yaml rendering"
  local crds
  crds=$(operator_crds)
  kubectl apply --server-side -f "$crds/monitoring.coreos.com_servicemonitors.yaml" \
    -f "$crds/monitoring.coreos.com_podmonitors.yaml" \
    -f "$crds/monitoring.coreos.com_prometheusrules.yaml" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s \
    crd/servicemonitors.monitoring.coreos.com crd/podmonitors.monitoring.coreos.com \
    crd/prometheusrules.monitoring.coreos.com >/dev/null
  log "Prometheus Operator CRDs (generated from monitoring/v1 $(cat "$crds/VERSION")) established"
  kubectl create namespace tcpstate >/dev/null
  kubectl create namespace monitoring >/dev/null
  local f kinds
  for f in "${CHART}"/ci/*.yaml; do
    helm template tcpstate "$CHART" --namespace tcpstate -f "$f" >"${RUN}/render.yaml"
    # Server-side dry run with strict field validation: the objects pass
    # the API server's schemas (the CRDs' for the operator's kinds) and its
    # admission, and no field is unknown.
    kubectl apply --dry-run=server --validate=strict -f "${RUN}/render.yaml" >"${RUN}/logs/dry-run.log" 2>&1 ||
      { cat "${RUN}/logs/dry-run.log" >&2; fail "the API server refused the rendering of ci/$(basename "$f")"; }
    kinds=$(awk '/^kind:/ {print $2}' "${RUN}/render.yaml" | sort | uniq -c | awk '{printf "%s%s ", $2, ($1>1 ? "x"$1 : "")}')
    log "ci/$(basename "$f") accepted: ${kinds}"
  done
  log "level apiserver passed"
}

start_node() {
  local t=$SECONDS c="${RUN}/containerd"
  mkdir -p "$c" "${RUN}/cni"
  cat >"${RUN}/cni/10-deploy.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "deploy", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
  cat >"$c/config.toml" <<EOF
version = 2
root = "${c}/root"
state = "${c}/state"
[grpc]
  address = "${c}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${c}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${RUN}/cni"
EOF
  bg containerd containerd --config "$c/config.toml"
  wait_for 30 "containerd" ctr --address "$c/containerd.sock" version ||
    { tail -20 "${RUN}/logs/containerd.log" >&2; fail "containerd did not start"; }
  local img
  for img in pause demo exporter; do
    ctr --address "$c/containerd.sock" -n k8s.io images import "${RUN}/${img}.tar" >/dev/null
  done
  cat >"${RUN}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://${c}/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${RUN}/pki/ca.crt}
authorization: {mode: Webhook}
address: ${NODE_IP}
readOnlyPort: 0
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  bg kubelet kubelet --config="${RUN}/kubelet.yaml" --kubeconfig="$KUBECONFIG" \
    --root-dir=/var/lib/kubelet --hostname-override="$NODE" --node-ip="$NODE_IP"
  wait_for 120 "node ${NODE} Ready" kubectl wait --for=condition=Ready "node/${NODE}" --timeout=2s ||
    { tail -30 "${RUN}/logs/kubelet.log" >&2; fail "node not Ready"; }
  log "containerd and kubelet: node Ready in $((SECONDS - t))s"
}

dsname() { echo "$1-tcpstate-exporter"; }

# exporter_metrics RELEASE PORT: the DaemonSet pod's /metrics into metrics.txt.
exporter_metrics() {
  curl -sf "http://${NODE_IP}:$2/metrics" -o "${RUN}/metrics.txt"
}

# pod_series_labelled: the demo pod's listener on 8080 carries its
# namespace and pod name.
pod_series_labelled() {
  exporter_metrics tcpstate 9874 &&
    grep '^tcpstate_listener_sockets{' "${RUN}/metrics.txt" | grep 'port="8080"' |
    grep 'namespace="demo"' | grep -q 'pod="web"'
}

psa_refused() {
  kubectl get events -n psa-baseline --field-selector reason=FailedCreate -o json |
    jq -e '[.items[].message | select(test("violates PodSecurity"))] | length > 0' >/dev/null
}

level_node() {
  log "== level node: helm install, DaemonSet Ready, listeners, pod mode, Pod Security"
  kubectl label namespace tcpstate pod-security.kubernetes.io/enforce=privileged >/dev/null
  local t=$SECONDS sets=(--set "image.repository=${IMAGE%:*}" --set "image.tag=${IMAGE##*:}"
    --set prometheus.monitor.enabled=true --set prometheusRule.enabled=true)
  helm install tcpstate "$CHART" --namespace tcpstate "${sets[@]}" --wait --timeout 180s >"${RUN}/logs/helm.log" 2>&1 ||
    { cat "${RUN}/logs/helm.log" >&2; kubectl -n tcpstate describe pods >&2; fail "helm install (host mode)"; }
  kubectl -n tcpstate wait pod -l app.kubernetes.io/instance=tcpstate --for=condition=Ready --timeout=60s >/dev/null
  log "host mode: DaemonSet pod Running and Ready $((SECONDS - t))s after helm install"
  wait_for 30 "/metrics listeners to match ss" listeners_match "http://${NODE_IP}:9874/metrics" env ||
    { diff "${RUN}/ports.metrics" "${RUN}/ports.ss" >&2; fail "the pod's /metrics listeners differ from the node's (ss)"; }
  log "host mode: /metrics lists the node's listening ports as ss does: $(tr '\n' ' ' <"${RUN}/ports.ss")"

  # A demo pod in its own network namespace, then pod mode.
  kubectl create namespace demo >/dev/null
  wait_for 60 "service account demo/default" kubectl -n demo get serviceaccount default
  kubectl -n demo run web --image="$DEMO_IMAGE" --image-pull-policy=IfNotPresent --restart=Never \
    --command -- /bin/busybox httpd -f -p 8080 -h / >/dev/null
  kubectl -n demo wait pod/web --for=condition=Ready --timeout=120s >/dev/null ||
    { kubectl -n demo describe pod web >&2; fail "demo pod not Ready"; }
  t=$SECONDS
  # Pod mode with the eBPF events on (events.enabled adds CAP_BPF and
  # CAP_PERFMON): every dashboard, the events one included, must show data.
  helm upgrade tcpstate "$CHART" --namespace tcpstate "${sets[@]}" --set netnsMode=all --set events.enabled=true \
    --wait --timeout 180s >"${RUN}/logs/helm.log" 2>&1 ||
    { cat "${RUN}/logs/helm.log" >&2; kubectl -n tcpstate describe pods >&2; fail "helm upgrade to pod mode"; }
  kubectl -n tcpstate rollout status ds/"$(dsname tcpstate)" --timeout=120s >/dev/null
  kubectl -n tcpstate wait pod -l app.kubernetes.io/instance=tcpstate --for=condition=Ready --timeout=60s >/dev/null ||
    { kubectl -n tcpstate describe pods >&2; fail "pod mode: pod not Ready"; }
  log "pod mode: DaemonSet pod Running and Ready $((SECONDS - t))s after helm upgrade"
  wait_for 30 "the demo pod's series labelled namespace=demo, pod=web" pod_series_labelled ||
    { grep -E 'port="8080"|tcpstate_netns' "${RUN}/metrics.txt" >&2; fail "pod mode: no series labelled namespace=\"demo\", pod=\"web\""; }
  log "pod mode: $(grep '^tcpstate_listener_sockets{' "${RUN}/metrics.txt" | grep 'pod="web"' | head -1)"
  wait_for 30 "pod mode listeners to match ss" listeners_match "http://${NODE_IP}:9874/metrics" env ||
    { diff "${RUN}/ports.metrics" "${RUN}/ports.ss" >&2; fail "pod mode: host listeners differ from ss"; }
  kubectl -n tcpstate logs ds/"$(dsname tcpstate)" >"${RUN}/logs/exporter-pod.log" 2>&1
  if grep -Ei 'permission denied|operation not permitted|EPERM|EACCES|forbidden' "${RUN}/logs/exporter-pod.log" >&2; then
    fail "pod mode: the exporter's log has permission errors (above)"
  fi
  log "pod mode: exporter log ($(wc -l <"${RUN}/logs/exporter-pod.log") lines) free of permission errors"
  grep -q 'tcpstate_resets_received_total' "${RUN}/metrics.txt" ||
    { grep -i event "${RUN}/logs/exporter-pod.log" >&2; fail "pod mode with events.enabled: no event series"; }
  log "pod mode: eBPF events on ($(grep -ci 'event' "${RUN}/logs/exporter-pod.log") log lines about events)"

  # Pod Security baseline: the DaemonSet is accepted, its pods refused.
  kubectl create namespace psa-baseline >/dev/null
  kubectl label namespace psa-baseline pod-security.kubernetes.io/enforce=baseline >/dev/null
  helm install psa "$CHART" --namespace psa-baseline "${sets[@]}" --set netnsMode=all \
    --set service.port=9876 >"${RUN}/logs/helm-psa.log" 2>&1 ||
    { cat "${RUN}/logs/helm-psa.log" >&2; fail "helm install into the baseline namespace"; }
  wait_for 60 "FailedCreate (PodSecurity) in psa-baseline" psa_refused ||
    { kubectl -n psa-baseline get events >&2; fail "a baseline namespace did not refuse the pods"; }
  [[ -z "$(kubectl -n psa-baseline get pods -o name)" ]] || fail "pods exist in the baseline namespace"
  log "baseline namespace refuses the pods: $(kubectl get events -n psa-baseline --field-selector reason=FailedCreate -o json |
    jq -r '[.items[].message | select(test("violates PodSecurity"))][0]' | cut -c1-240)"
  helm uninstall psa --namespace psa-baseline >/dev/null
  log "level node passed"
}

level_prometheus() {
  log "== level prometheus: scrape through the Service's endpoints, rules, dashboards"
  local p="${RUN}/pki" rules="${CHART}/files/tcpstate.rules.yml" t=$SECONDS
  mkdir -p "${RUN}/prometheus"
  # What the chart's ServiceMonitor selects: the endpoints of the Service
  # with the chart's selector labels, port http-metrics; job from its
  # jobLabel (app.kubernetes.io/name). Debian's Prometheus is built without
  # Kubernetes discovery, so the endpoints are read from the API server here
  # and given to Prometheus as a file_sd target list.
  local svc
  svc=$(kubectl -n tcpstate get service -l app.kubernetes.io/name=tcpstate-exporter,app.kubernetes.io/instance=tcpstate -o jsonpath='{.items[0].metadata.name}')
  wait_for 60 "endpoints of service ${svc}" bash -c "kubectl -n tcpstate get endpointslices -l kubernetes.io/service-name=${svc} -o json |
    jq -e '[.items[] | .endpoints[]? | select(.conditions.ready)] | length > 0'"
  kubectl -n tcpstate get endpointslices -l "kubernetes.io/service-name=${svc}" -o json | jq --arg svc "$svc" '
    [.items[] | (.ports[] | select(.name == "http-metrics") | .port) as $port |
     .endpoints[] | select(.conditions.ready) |
     {targets: [.addresses[0] + ":" + ($port | tostring)],
      labels: {job: "tcpstate-exporter", service: $svc, pod: (.targetRef.name // "")}}]' >"${RUN}/prometheus/targets.json"
  log "ServiceMonitor endpoints: $(jq -c '[.[].targets[0]]' "${RUN}/prometheus/targets.json")"
  cat >"${RUN}/prometheus/prometheus.yml" <<EOF
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: ["${rules}"]
scrape_configs:
  - job_name: tcpstate-exporter
    honor_labels: true
    file_sd_configs: [{files: ["${RUN}/prometheus/targets.json"]}]
EOF
  promtool check config "${RUN}/prometheus/prometheus.yml" >/dev/null
  bg prometheus prometheus --config.file="${RUN}/prometheus/prometheus.yml" \
    --storage.tsdb.path="${RUN}/prometheus/data" --web.listen-address=127.0.0.1:9090
  local api=http://127.0.0.1:9090/api/v1
  wait_for 60 "a healthy scrape of ${NODE_IP}:9874" bash -c \
    "curl -sf '$api/targets' | jq -e '[.data.activeTargets[] | select(.health==\"up\" and .scrapeUrl==\"http://${NODE_IP}:9874/metrics\")] | length == 1'" ||
    { curl -s "$api/targets" >&2; fail "Prometheus does not scrape the pod"; }
  log "Prometheus scrapes the pod through the Service's endpoints ($((SECONDS - t))s)"
  local want got
  want=$(promtool check rules "$rules" | sed -nE 's/.*SUCCESS: ([0-9]+) rules found.*/\1/p')
  wait_for 30 "rules loaded" bash -c "curl -sf '$api/rules' | jq -e '[.data.groups[].rules[] | select(.health==\"ok\")] | length == ${want}'" ||
    { curl -s "$api/rules" | jq -c '.data.groups[].rules[] | {name, health, lastError}' >&2; fail "rules not loaded and healthy"; }
  got=$(curl -sf "$api/rules" | jq '[.data.groups[]] | length')
  log "rules file loaded: ${want} rules in ${got} groups, all evaluating (health ok)"
  # One query per dashboard returns data from the pod: the first of its
  # panel queries that does (queries ending in "or vector(0)" count only
  # if no other query of the dashboard returns data).
  local f
  for f in "${CHART}"/files/dashboards/*.json; do
    wait_for 60 "a query of $(basename "$f") with data" dashboard_has_data "$f" ||
      fail "no query of dashboard $(basename "$f") returns data"
    log "dashboard $(basename "$f"): $(cat "${RUN}/dashboard-hit")"
  done
  log "level prometheus passed"
}

dashboard_has_data() {
  local f=$1 q n pass
  for pass in real fallback; do
    while IFS= read -r q; do
      if [[ "$pass" == real && "$q" == *"or vector("* ]]; then continue; fi
      if [[ "$pass" == fallback && "$q" != *"or vector("* ]]; then continue; fi
      q=$(sed -E -e 's/\$__rate_interval|\$__interval|\$__range/1m/g' -e 's/\$\{?[a-z_]+\}?/.*/g' <<<"$q")
      n=$(curl -sf http://127.0.0.1:9090/api/v1/query --data-urlencode "query=$q" |
        jq '.data.result | length') || continue
      if ((n > 0)); then
        printf '%s series for %s%s\n' "$n" "$q" "$([[ $pass == fallback ]] && echo ' (only a vector(0) fallback query had data)')" >"${RUN}/dashboard-hit"
        return 0
      fi
    done < <(jq -r '[.. | objects | select(has("expr")) | .expr] | .[]' "$f")
  done
  return 1
}

# ------------------------------------------------------------------- main

images_for_node() {
  # The sandbox image: pause.c of the Kubernetes module, static.
  local kdir
  kdir=$(cd "${ROOT}/deploy/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  mkdir -p "${D}/pause"
  if [[ ! -x "${D}/pause/pause" ]]; then
    gcc -Os -static -o "${D}/pause/pause" "$kdir/build/pause/linux/pause.c"
  fi
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"${D}/pause/Containerfile"
  podman build --pull=never --network=none --quiet -t "$PAUSE_IMAGE" -f "${D}/pause/Containerfile" "${D}/pause" >/dev/null
  # The demo pod: a static busybox serving HTTP.
  mkdir -p "${D}/demo"
  cp /bin/busybox "${D}/demo/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nUSER 65534:65534\n' >"${D}/demo/Containerfile"
  podman build --pull=never --network=none --quiet -t "$DEMO_IMAGE" -f "${D}/demo/Containerfile" "${D}/demo" >/dev/null
  podman save --quiet --format docker-archive -o "${RUN}/pause.tar" "$PAUSE_IMAGE"
  podman save --quiet --format docker-archive -o "${RUN}/demo.tar" "$DEMO_IMAGE"
  podman save --quiet --format docker-archive -o "${RUN}/exporter.tar" "$IMAGE"
}

clean() {
  KEEP=0
  [[ -d "${RUN}/host-before" ]] || fail "no run to clean in ${RUN}"
  trap cleanup_host EXIT
}

# The run, inside a private mount namespace (podman's storage mounts and
# the named network namespace stay in it).
stage() {
  local level=$1
  readlink /proc/self/ns/mnt >"${RUN}/stage-mntns"
  mount --make-rprivate /
  setup_netns
  if [[ "$level" == image || "$level" == all ]]; then
    level_image
  fi
  [[ "$level" == image ]] && return
  build_kubernetes
  if [[ "$level" != apiserver ]]; then
    [[ "$level" == all ]] || build_image
    images_for_node
  fi
  local inner_level=$level
  [[ "$level" == all ]] && inner_level=prometheus
  nsenter --net="/run/netns/${NS}" unshare --mount --propagation private -- "$SELF" --inner "$inner_level"
}

main() {
  case "${1:-}" in
    --inner) export PATH="${BIN}:$PATH:$(go env GOPATH)/bin"; inner "$2"; return ;;
    --stage) export PATH="${BIN}:$PATH:$(go env GOPATH)/bin"; stage "$2"; return ;;
  esac
  local level=${1:-all}
  case "$level" in
    image | apiserver | node | prometheus | all) ;;
    clean) clean; return ;;
    *) echo "usage: $0 [image|apiserver|node|prometheus|all|clean]" >&2; exit 2 ;;
  esac
  [[ "$(id -u)" == 0 ]] || fail "run as root: the test creates network and mount namespaces"
  local t0=$SECONDS
  install_packages
  if [[ -s "${RUN}/netns" && -d "${RUN}/host-before" && ! -f "${RUN}/host-after/sysctl" ]]; then
    fail "a previous run is still up or was not cleaned (KEEP=1?): run $0 clean"
  fi
  rm -rf "$RUN"
  mkdir -p "${RUN}/logs"
  host_state "${RUN}/host-before"
  trap cleanup_host EXIT
  unshare --mount --propagation private -- "$SELF" --stage "$level"
  log "level ${level} passed in $((SECONDS - t0))s"
}

main "$@"
