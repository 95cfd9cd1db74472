// Serves dist/ (or the folder in $DIST) on http://127.0.0.1:PORT (default 8080): a plain static
// host, nothing else.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

const root = process.env.DIST ? `${process.env.DIST}/` : new URL('../dist/', import.meta.url).pathname;
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.png': 'image/png' };
const port = Number(process.env.PORT || process.argv[2] || 8080);

createServer(async (req, res) => {
  try {
    // Inside the try: a malformed escape (a request for /%) is a 404, not a crash of the server.
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(root, path.endsWith('/') ? `${path}index.html` : path);
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404).end('not found');
  }
}).listen(port, '127.0.0.1', () => console.log(`anondistill: open http://127.0.0.1:${port}/`));
