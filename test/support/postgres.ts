/**
 * A throwaway PostgreSQL cluster for tests: initdb in a temporary directory, a server on a free
 * loopback port (trust authentication, a `bilevel` superuser), stopped and removed by `stop`.
 * PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user Debian's
 * package creates. `binaries()` says why there is none when it cannot start one.
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir, userInfo } from "node:os"
import * as path from "node:path"

/** The directory of initdb and pg_ctl (PATH first, then Debian's versioned directories), or why none. */
export const binaries = (): { readonly bin: string } | { readonly missing: string } => {
  if (userInfo().uid === 0 && !/^postgres:/m.test(readFileSync("/etc/passwd", "utf8"))) {
    return { missing: "PostgreSQL refuses to run as root and there is no postgres user to run it as (Debian's postgresql package creates one)" }
  }
  const onPath = (process.env["PATH"] ?? "").split(":").find((dir) => existsSync(path.join(dir, "initdb")) && existsSync(path.join(dir, "pg_ctl")))
  if (onPath !== undefined) return { bin: onPath }
  const debian = "/usr/lib/postgresql"
  const version = existsSync(debian) ? readdirSync(debian).sort().reverse().find((v) => existsSync(path.join(debian, v, "bin", "initdb"))) : undefined
  if (version !== undefined) return { bin: path.join(debian, version, "bin") }
  return { missing: "PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql; .ci/run does)" }
}

/** A TCP port free on 127.0.0.1 now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

export interface Postgres {
  readonly url: string
  readonly stop: () => void
}

/** Starts a server from the initdb and pg_ctl in `bin`. */
export const startPostgres = async (bin: string): Promise<Postgres> => {
  const asRoot = userInfo().uid === 0
  // As root the server runs as postgres, which must reach its directory: /tmp, not a TMPDIR private to root.
  const root = mkdtempSync(path.join(asRoot ? "/tmp" : tmpdir(), "bilevel-pg-"))
  const run = (tool: string, args: ReadonlyArray<string>) =>
    asRoot
      ? execFileSync("runuser", ["-u", "postgres", "--", path.join(bin, tool), ...args], { stdio: "pipe" })
      : execFileSync(path.join(bin, tool), args, { stdio: "pipe" })
  if (asRoot) execFileSync("chown", ["postgres", root])
  const data = path.join(root, "data")
  const port = await freePort()
  run("initdb", ["-D", data, "-A", "trust", "-U", "bilevel", "--no-sync"])
  run("pg_ctl", ["-D", data, "-l", path.join(root, "log"), "-w", "start", "-o", `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off`])
  return {
    url: `postgres://bilevel@127.0.0.1:${port}/postgres`,
    stop: () => {
      try {
        run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
      } finally {
        rmSync(root, { recursive: true, force: true })
      }
    }
  }
}
