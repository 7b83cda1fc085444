#!/bin/sh
# The system packages a make target needs beyond python3 and make, in one place.
#
#   sh scripts/system-packages.sh venv   python3 can create a virtual environment
#   sh scripts/system-packages.sh test   the above, plus promtool, prometheus, amtool and
#                                        docker-compose
#   sh scripts/system-packages.sh make   make itself (for .ci/run on a bare machine)
#
# When everything is present it prints nothing and changes nothing (no apt-get update).
# When something is missing: as root with apt-get, installs the Debian packages quietly and
# non-interactively (apt-get update first); otherwise stops with one line naming them.
# Environment: PYTHON (default python3), VENV (default .venv; an existing one needs no
# python3-venv).
set -eu

python=${PYTHON:-python3}
venv=${VENV:-.venv}
missing_tools=""
missing_packages=""

need() { # need TOOL PACKAGE
    missing_tools="${missing_tools:+$missing_tools, }$1"
    case " $missing_packages " in
    *" $2 "*) ;;
    *) missing_packages="${missing_packages:+$missing_packages }$2" ;;
    esac
}

has() { command -v "$1" >/dev/null 2>&1; }

has_compose() {
    has docker-compose || { has docker && docker compose version >/dev/null 2>&1; }
}

check_group() {
    case $1 in
    make)
        has make || need make make
        ;;
    venv)
        [ -x "$venv/bin/python" ] \
            || "$python" -c 'import ensurepip, venv' >/dev/null 2>&1 \
            || need "python3 venv support" python3-venv
        ;;
    test)
        check_group venv
        has promtool || need promtool prometheus
        has prometheus || need prometheus prometheus
        has amtool || need amtool prometheus-alertmanager
        has_compose || need docker-compose docker-compose
        ;;
    *)
        echo "system-packages.sh: unknown group '$1' (use venv, test or make)" >&2
        exit 2
        ;;
    esac
}

check() { # check GROUP...: sets missing_tools and missing_packages
    missing_tools=""
    missing_packages=""
    for group in "$@"; do
        check_group "$group"
    done
}

[ $# -gt 0 ] || set -- test
check "$@"
[ -n "$missing_packages" ] || exit 0

if [ "$(id -u)" != 0 ] || ! has apt-get; then
    echo "missing $missing_tools: install the Debian packages $missing_packages (as root: apt-get install $missing_packages)" >&2
    exit 1
fi

echo "installing Debian packages for $missing_tools: $missing_packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # a list of package names
apt-get install -y -qq --no-install-recommends $missing_packages >/dev/null
check "$@"
if [ -n "$missing_packages" ]; then
    echo "still missing after apt-get install: $missing_tools" >&2
    exit 1
fi
