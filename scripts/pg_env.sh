# Sourced by the scripts that start throwaway PostgreSQL servers: sets `bin`
# (the newest PostgreSQL's binaries), makes a work directory named after
# PREFIX in `workdir`, and sets `as_pg`, the prefix that runs a command as
# `postgres` when we are root (the server refuses to run as root).
# Usage: . scripts/pg_env.sh PREFIX
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
workdir=$(mktemp -d "/tmp/$1-XXXXXX")
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$workdir"
  as_pg=(runuser -u postgres --)
fi
