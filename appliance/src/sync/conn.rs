//! A blocking TCP connection to one buddy, driving the core's sans-IO
//! [`ClientSession`].

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pastiche_core::session::{ClientEvent, ClientSession, MAX_PIPELINED_GETS};
use pastiche_core::wire::{ErrorCode, IdList, Welcome, DECODER_BUFFER_LEN, MAX_FRAME_PAYLOAD};
use pastiche_core::{ChunkId, Identity, NodeId, PublicKey};
use rand::RngCore;

/// How long to wait for a buddy to connect or answer.
const TIMEOUT: Duration = Duration::from_secs(60);

/// An authenticated session with a buddy.
pub struct BuddyConn {
    /// The address connected to.
    pub addr: SocketAddr,
    /// The buddy's key, as it announced it.
    pub buddy_key: PublicKey,
    /// What the buddy said at the hello.
    pub welcome: Welcome,
    /// Time from connect to welcome.
    pub rtt: Duration,
    session: ClientSession,
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    out: Vec<u8>,
    payload: Vec<u8>,
}

/// An answer, owned.
#[derive(Debug)]
enum Answer {
    Need(Vec<bool>),
    Flushed(u32),
    Chunk,
    Staged,
    Committed,
    Object,
    Root(u64),
    Dropped,
    Ok,
}

impl BuddyConn {
    /// Connects to `addr` and completes the hello as `identity`.
    pub fn connect(addr: &str, identity: &Identity, node: NodeId) -> Result<BuddyConn> {
        BuddyConn::connect_pairing(addr, identity, node, None)
    }

    /// [`BuddyConn::connect`], presenting a one-time pairing `code` so that a
    /// buddy that has not admitted this box yet admits it.
    pub fn connect_pairing(addr: &str, identity: &Identity, node: NodeId, code: Option<&str>) -> Result<BuddyConn> {
        let started = Instant::now();
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve buddy {addr}"))?
            .next()
            .ok_or_else(|| anyhow!("buddy {addr} has no address"))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(10))
            .with_context(|| format!("cannot connect to buddy {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let mut nonce = [0u8; 32];
        let mut entropy = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        rand::rngs::OsRng.fill_bytes(&mut entropy);
        let mut conn = BuddyConn {
            addr: sock,
            buddy_key: PublicKey([0; 32]),
            welcome: Welcome { quota_bytes: 0, used_bytes: 0, committed_epoch: 0, staged_epoch: 0 },
            rtt: Duration::ZERO,
            session: match code {
                Some(code) => ClientSession::new(identity.clone(), node, nonce, entropy)
                    .with_pairing_code(code)
                    .map_err(|e| anyhow!("pairing code: {e}"))?,
                None => ClientSession::new(identity.clone(), node, nonce, entropy),
            },
            // Large buffered reads: a pipelined restore receives many frames per syscall.
            reader: BufReader::with_capacity(1 << 18, stream.try_clone()?),
            writer: BufWriter::with_capacity(1 << 20, stream),
            out: vec![0; DECODER_BUFFER_LEN],
            payload: vec![0; MAX_FRAME_PAYLOAD],
        };
        let n = conn.session.start(&mut conn.out)?;
        conn.send(n)?;
        conn.writer.flush()?;
        loop {
            let len = conn.read_frame()?;
            let (session, payload, out) = (&mut conn.session, &conn.payload[..len], &mut conn.out);
            match session.handle(payload, out).map_err(|e| anyhow!("buddy {addr}: {e}"))? {
                ClientEvent::SendProof(n) => {
                    conn.send(n)?;
                    conn.writer.flush()?;
                }
                ClientEvent::Welcome(w) => {
                    conn.welcome = w;
                    conn.buddy_key = conn.session.buddy_key().expect("authenticated");
                    conn.rtt = started.elapsed();
                    return Ok(conn);
                }
                ClientEvent::Refused { code: ErrorCode::NotAuthenticated, message } => {
                    bail!("buddy {addr} refused this box: {message}")
                }
                ClientEvent::Refused { code, message } => bail!("buddy {addr} refused the hello: {code:?}: {message}"),
                other => bail!("buddy {addr} answered the hello with {other:?}"),
            }
        }
    }

    fn send(&mut self, n: usize) -> Result<()> {
        self.writer.write_all(&self.out[..n]).with_context(|| format!("sending to buddy {}", self.addr))
    }

    /// Reads one frame's payload into `self.payload`; returns its length.
    fn read_frame(&mut self) -> Result<usize> {
        self.writer.flush()?;
        let mut header = [0u8; 4];
        self.reader.read_exact(&mut header).with_context(|| format!("buddy {} closed the connection", self.addr))?;
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 || len > MAX_FRAME_PAYLOAD {
            bail!("buddy {} sent a frame of {len} bytes", self.addr);
        }
        self.reader
            .read_exact(&mut self.payload[..len])
            .with_context(|| format!("reading from buddy {}", self.addr))?;
        Ok(len)
    }

    /// Waits for the answer to the outstanding request. A refused upload
    /// (quota) arriving first is collected in `refused_puts`.
    fn answer(&mut self, data: Option<&mut Vec<u8>>, refused_puts: &mut u32) -> Result<Answer> {
        let mut data = data;
        loop {
            let len = self.read_frame()?;
            let event = self
                .session
                .handle(&self.payload[..len], &mut self.out)
                .map_err(|e| anyhow!("buddy {}: {e}", self.addr))?;
            let answer = match event {
                ClientEvent::Need(n) => Answer::Need((0..n.bitmap.len() * 8).map(|i| n.lacks(i)).collect()),
                ClientEvent::Flushed(n) => Answer::Flushed(n),
                ClientEvent::Chunk { sealed, .. } => {
                    if let Some(d) = data.as_mut() {
                        d.clear();
                        d.extend_from_slice(sealed);
                    }
                    Answer::Chunk
                }
                ClientEvent::Staged(_) => Answer::Staged,
                ClientEvent::Committed(_) => Answer::Committed,
                ClientEvent::Object { data: o, .. } => {
                    if let Some(d) = data.as_mut() {
                        d.clear();
                        d.extend_from_slice(o);
                    }
                    Answer::Object
                }
                ClientEvent::Root { epoch, data: r } => {
                    if let Some(d) = data.as_mut() {
                        d.clear();
                        d.extend_from_slice(r);
                    }
                    Answer::Root(epoch)
                }
                ClientEvent::Dropped => Answer::Dropped,
                ClientEvent::Ok => Answer::Ok,
                ClientEvent::Refused { code: ErrorCode::QuotaExceeded, .. } => {
                    *refused_puts += 1;
                    continue;
                }
                ClientEvent::Refused { code, message } => {
                    return Err(BuddyRefused { code, message: message.to_string() }.into())
                }
                other => bail!("buddy {} sent {other:?} unasked", self.addr),
            };
            return Ok(answer);
        }
    }

    /// Which of `ids` the buddy lacks (it now holds references to the others for us).
    pub fn offer(&mut self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let mut packed = vec![0u8; ids.len() * 20];
        let list = IdList::pack(ids.iter().map(|i| i.0), &mut packed)?;
        let n = self.session.offer(list, &mut self.out)?;
        self.send(n)?;
        match self.answer(None, &mut 0)? {
            Answer::Need(mut lacks) => {
                lacks.truncate(ids.len());
                Ok(lacks)
            }
            other => bail!("expected Need, got {other:?}"),
        }
    }

    /// Uploads a chunk (answered, if refused, before the next flush's answer).
    pub fn put_chunk(&mut self, id: ChunkId, sealed: &[u8]) -> Result<()> {
        let n = self.session.put_chunk(id, sealed, &mut self.out)?;
        self.send(n)
    }

    /// Makes every upload durable; returns (new chunks stored, uploads refused for quota).
    pub fn flush(&mut self) -> Result<(u32, u32)> {
        let n = self.session.flush(&mut self.out)?;
        self.send(n)?;
        let mut refused = 0;
        match self.answer(None, &mut refused)? {
            Answer::Flushed(stored) => Ok((stored, refused)),
            other => bail!("expected Flushed, got {other:?}"),
        }
    }

    /// Fetches a sealed chunk into `out`.
    pub fn get_chunk(&mut self, id: ChunkId, out: &mut Vec<u8>) -> Result<()> {
        let n = self.session.get_chunk(id, &mut self.out)?;
        self.send(n)?;
        self.answer(Some(out), &mut 0).map(|_| ())
    }

    /// Fetches many chunks with up to [`MAX_PIPELINED_GETS`] requests in
    /// flight; `each(i, sealed)` sees them in order.
    pub fn get_chunks(&mut self, ids: &[ChunkId], mut each: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
        let mut sent = 0;
        let mut got = 0;
        while got < ids.len() {
            while sent < ids.len() && self.session.gets_in_flight() < MAX_PIPELINED_GETS {
                let n = self.session.get_chunk(ids[sent], &mut self.out)?;
                self.send(n)?;
                sent += 1;
            }
            let len = self.read_frame()?;
            let event = self
                .session
                .handle(&self.payload[..len], &mut self.out)
                .map_err(|e| anyhow!("buddy {}: {e}", self.addr))?;
            match event {
                ClientEvent::Chunk { sealed, .. } => each(got, sealed)?,
                ClientEvent::Refused { code, message } => {
                    return Err(BuddyRefused { code, message: format!("chunk {}: {message}", ids[got]) }.into())
                }
                other => bail!("buddy {} sent {other:?} unasked", self.addr),
            }
            got += 1;
        }
        Ok(())
    }

    /// Stages an object for `epoch`.
    pub fn put_object(&mut self, epoch: u64, name: [u8; 20], data: &[u8]) -> Result<()> {
        let n = self.session.put_object(epoch, name, data, &mut self.out)?;
        self.send(n)
    }

    /// Stages the release of chunk references at `epoch`.
    pub fn delete_list(&mut self, epoch: u64, ids: &[ChunkId]) -> Result<()> {
        let mut packed = vec![0u8; ids.len() * 20];
        let list = IdList::pack(ids.iter().map(|i| i.0), &mut packed)?;
        let n = self.session.delete_list(epoch, list, &mut self.out)?;
        self.send(n)
    }

    /// Stages the root object for `epoch`.
    pub fn put_root(&mut self, epoch: u64, data: &[u8]) -> Result<()> {
        let n = self.session.put_root(epoch, data, &mut self.out)?;
        self.send(n)
    }

    /// Commits `epoch` in two phases; returns once it is applied.
    pub fn commit(&mut self, epoch: u64, objects: u32, deletes: u32) -> Result<()> {
        let n = self.session.commit(epoch, objects, deletes, &mut self.out)?;
        self.send(n)?;
        match self.answer(None, &mut 0)? {
            Answer::Staged => {}
            other => bail!("expected Staged, got {other:?}"),
        }
        match self.answer(None, &mut 0)? {
            Answer::Committed => Ok(()),
            other => bail!("expected Committed, got {other:?}"),
        }
    }

    /// Fetches one of our objects.
    pub fn get_object(&mut self, name: [u8; 20], out: &mut Vec<u8>) -> Result<()> {
        let n = self.session.get_object(name, &mut self.out)?;
        self.send(n)?;
        self.answer(Some(out), &mut 0).map(|_| ())
    }

    /// Fetches our root object: its epoch.
    pub fn get_root(&mut self, out: &mut Vec<u8>) -> Result<u64> {
        let n = self.session.get_root(&mut self.out)?;
        self.send(n)?;
        match self.answer(Some(out), &mut 0)? {
            Answer::Root(epoch) => Ok(epoch),
            other => bail!("expected Root, got {other:?}"),
        }
    }

    /// Removes everything of ours from the buddy.
    pub fn drop_all(&mut self, epoch: u64) -> Result<()> {
        let n = self.session.drop_all(epoch, &mut self.out)?;
        self.send(n)?;
        match self.answer(None, &mut 0)? {
            Answer::Dropped | Answer::Ok => Ok(()),
            other => bail!("expected Dropped, got {other:?}"),
        }
    }
}

/// The buddy answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("the buddy refused: {code:?}: {message}")]
pub struct BuddyRefused {
    /// The error code.
    pub code: ErrorCode,
    /// The buddy's words.
    pub message: String,
}
