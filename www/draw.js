// Drawing: the curves, the grey images and the table cells of the panels.

export function plot(canvas, values, color) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (values.length === 0) return;
  const lo = Math.min(...values), hi = Math.max(...values);
  const span = hi - lo || 1;
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = 30 + (i / Math.max(1, values.length - 1)) * (canvas.width - 40);
    const y = 10 + (1 - (v - lo) / span) * (canvas.height - 30);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = '#333';
  ctx.font = '11px sans-serif';
  ctx.fillText(hi.toPrecision(3), 2, 12);
  ctx.fillText(lo.toPrecision(3), 2, canvas.height - 20);
}

// Paints a size × size grey image on `canvas`: values in [0, 1] as they are, or min–max scaled
// when `stretch`.
export function paintGrey(canvas, values, size, stretch) {
  let lo = 0, hi = 1;
  if (stretch) {
    lo = Infinity; hi = -Infinity;
    for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  const span = hi - lo || 1;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(size, size);
  values.forEach((v, k) => {
    const g = Math.round(Math.min(1, Math.max(0, (v - lo) / span)) * 255);
    img.data.set([g, g, g, 255], k * 4);
  });
  ctx.putImageData(img, 0, 0);
}

// A new canvas with a grey image of pixel values in [0, 1], or min–max scaled when `stretch`.
export function greyCanvas(values, size, stretch) {
  const c = document.createElement('canvas');
  c.width = size;
  c.height = size;
  c.className = 'audit-image';
  paintGrey(c, values, size, stretch);
  return c;
}

export function cell(...parts) {
  const td = document.createElement('td');
  for (const p of parts) td.append(typeof p === 'string' ? document.createTextNode(p) : p);
  return td;
}
