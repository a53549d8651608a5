#!/bin/sh
# Container entrypoint of temporal-dsql-server.
#
# Temporal's membership ring needs an address the other containers can reach. The rendered
# config.yaml reads it through {{ env "BIND_ON_IP" }} and {{ env "TEMPORAL_BROADCAST_ADDRESS" }};
# both default to this container's own IP, and a value set by the environment is kept.
# With arguments, runs them instead (e.g. temporal-elasticsearch-tool for the index setup).
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

: "${SERVICE:?set SERVICE to the Temporal service to run: frontend, history, matching or worker}"

container_ip() {
    # /etc/hosts maps the container's hostname to its address on the compose network.
    addresses=$(getent hosts "$(hostname)" 2>/dev/null | awk '{ print $1 }') || addresses=""
    [ -n "$addresses" ] || addresses=$(hostname -i 2>/dev/null) || addresses=""
    # Prefer IPv4, then IPv6; loopback only as a last resort (it cannot reach other containers).
    v4="" v6="" loopback=""
    for candidate in $addresses; do
        case "$candidate" in
            127.*|::1) [ -n "$loopback" ] || loopback=$candidate ;;
            *:*) [ -n "$v6" ] || v6=$candidate ;;
            *) [ -n "$v4" ] || v4=$candidate ;;
        esac
    done
    ip=${v4:-${v6:-$loopback}}
    if [ -z "$ip" ]; then
        echo "entrypoint: cannot find this container's IP address (hostname $(hostname)); set BIND_ON_IP and TEMPORAL_BROADCAST_ADDRESS" >&2
        exit 1
    fi
    if [ "$ip" = "$loopback" ]; then
        echo "entrypoint: warning: $(hostname) resolves only to loopback $ip; other containers cannot reach this one" >&2
    fi
    printf '%s\n' "$ip"
}

if [ -z "${BIND_ON_IP:-}" ]; then
    BIND_ON_IP=$(container_ip)
fi
if [ -z "${TEMPORAL_BROADCAST_ADDRESS:-}" ]; then
    case "$BIND_ON_IP" in
        # A wildcard bind cannot be advertised to the other members.
        0.0.0.0|::|::0) TEMPORAL_BROADCAST_ADDRESS=$(container_ip) ;;
        *) TEMPORAL_BROADCAST_ADDRESS=$BIND_ON_IP ;;
    esac
fi
export BIND_ON_IP TEMPORAL_BROADCAST_ADDRESS
echo "entrypoint: service $SERVICE, bind $BIND_ON_IP, broadcast $TEMPORAL_BROADCAST_ADDRESS" >&2

# The server reads these as deprecated flags that conflict with --config-file.
unset TEMPORAL_ENVIRONMENT TEMPORAL_ROOT TEMPORAL_CONFIG_DIR TEMPORAL_AVAILABILITY_ZONE TEMPORAL_AVAILABILTY_ZONE

exec temporal-server --config-file /etc/temporal/config/config.yaml --allow-no-auth start --service "$SERVICE"
