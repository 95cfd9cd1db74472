// Bundles www/ and the wasm-bindgen output (pkg/) into dist/, a static folder any host can serve.
//
// Two builds, in order. `workers`: the engine's worker and its helper, each one self-contained
// classic script (target/workers/). `page`: the page, which carries those two scripts as text and
// starts them from blob: URLs, so that they inherit the page's Content-Security-Policy (a worker
// loaded from an http URL takes its policy from response headers, which a static host may not
// send). The page fetches the wasm once while it loads; after that its policy allows no request.
const path = require('path');
const HtmlWebpackPlugin = require('html-webpack-plugin');

const workers = {
  name: 'workers',
  target: 'webworker',
  entry: { worker: './www/worker.js', helper: './www/helper.js' },
  output: { path: path.resolve(__dirname, 'target/workers'), filename: '[name].js', publicPath: '', clean: true },
  module: {
    // The glue's default wasm URL is never used (the page hands the compiled module over): no copy.
    rules: [{ test: /\.wasm$/, type: 'asset/resource', generator: { emit: false } }],
  },
  performance: { hints: false },
};

const page = {
  name: 'page',
  dependencies: ['workers'],
  entry: './www/main.js',
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: '[name].[contenthash:8].js',
    assetModuleFilename: '[name].[contenthash:8][ext]',
    clean: true,
  },
  resolve: { alias: { workers: path.resolve(__dirname, 'target/workers') } },
  module: {
    rules: [
      { test: /\.css$/, use: ['style-loader', 'css-loader'] },
      { resourceQuery: /source/, type: 'asset/source' },
    ],
  },
  plugins: [new HtmlWebpackPlugin({ template: './www/index.html' })],
  performance: { hints: false },
  experiments: { asyncWebAssembly: false },
};

module.exports = [workers, page];
