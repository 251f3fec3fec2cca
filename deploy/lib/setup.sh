# Shared by deploy/quickstart and deploy/test: install what is missing on Debian/Ubuntu.
# Sourced, not run.

# $1 = "test" adds what only the test suite needs (nginx as an HTTP/2 + TLS front, openssl, and
# a headless Chromium that renders the HTML report).
loadstar_need_packages() {
    local need=()
    if [ "${1:-}" = test ]; then
        [ -x /usr/sbin/nginx ] || need+=(nginx-light)
        command -v openssl >/dev/null 2>&1 || need+=(openssl)
        command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1 || need+=(chromium-headless-shell)
        [ -x /usr/sbin/ip ] || need+=(iproute2)
    fi
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    pkg-config --exists libcurl 2>/dev/null || need+=(libcurl4-openssl-dev)
    pkg-config --exists libpq 2>/dev/null || need+=(libpq-dev)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
    command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
    command -v runuser >/dev/null 2>&1 || need+=(util-linux)
    echo "${need[@]}"
}

loadstar_setup() {  # $1: "test" for the test suite's extra packages
    if ! command -v swift >/dev/null 2>&1; then
        echo "loadstar: Swift 6 is required (swift not found on PATH); see https://www.swift.org/install/linux/" >&2
        exit 1
    fi
    local need
    need=$(loadstar_need_packages "${1:-}")
    if [ -n "$need" ]; then
        echo "loadstar: installing $need" >&2
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
    fi
}
