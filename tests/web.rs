//! The engine compiled to WebAssembly, in headless Chromium (wasm-bindgen-test; see
//! `scripts/test-browser.sh`, which runs this twice: without WebGPU and with SwiftShader's). The
//! same small distillation as the native engine's (`tests/fixtures/web_reference.json`) on the
//! CPU backends (burn-flex, the page's default, and the burn-ndarray fallback) and, when the
//! browser offers an adapter, on WebGPU: the hyper-gradient agrees within float32 tolerance and
//! the loss goes down.
#![cfg(target_arch = "wasm32")]

#[path = "common/reference.rs"]
mod reference;

use burn_flex::Flex;
use burn_ndarray::NdArray;
use burn_wgpu::{graphics::WebGpu, init_setup_async, Wgpu, WgpuDevice};
use js_sys::Reflect;
use reference::{assert_agrees, assert_descends, reference, Reference};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const FIXTURE: &str = include_str!("fixtures/web_reference.json");
/// Set at build time by the test script: "1" when Chromium runs with WebGPU, "0" when not.
const EXPECT_WEBGPU: Option<&str> = option_env!("ANONDISTILL_EXPECT_WEBGPU");

fn native() -> Reference {
    serde_json::from_str(FIXTURE).unwrap()
}

/// Whether `navigator.gpu.requestAdapter()` gives an adapter (what the page checks first too).
async fn webgpu_adapter() -> bool {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let gpu = Reflect::get(&navigator, &"gpu".into()).unwrap();
    if gpu.is_undefined() {
        return false;
    }
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into()).unwrap().into();
    let promise: js_sys::Promise = request.call0(&gpu).unwrap().into();
    let adapter = JsFuture::from(promise).await.unwrap_or(JsValue::NULL);
    !adapter.is_null() && !adapter.is_undefined()
}

/// A CPU backend in wasm (single-threaded, WebAssembly SIMD) against the native fixture.
async fn cpu_agrees<B: burn_tensor::backend::Backend>(name: &str) {
    let got = reference::<B>(&Default::default()).await;
    assert_descends(&got);
    let errors = assert_agrees(&got, &native(), 1e-4);
    web_sys::console::log_1(&format!("wasm {name} vs native: {errors:?}, losses {:?}", got.losses).into());
}

#[wasm_bindgen_test]
async fn cpu_backend_agrees_with_the_native_engine() {
    // The page's `cpu` backend.
    cpu_agrees::<Flex>("flex").await;
}

#[wasm_bindgen_test]
async fn ndarray_fallback_agrees_with_the_native_engine() {
    cpu_agrees::<NdArray>("ndarray").await;
}

#[wasm_bindgen_test]
async fn webgpu_backend_agrees_with_the_native_engine_when_there_is_an_adapter() {
    let present = webgpu_adapter().await;
    match EXPECT_WEBGPU {
        Some("1") => assert!(present, "Chromium was started with WebGPU but offers no adapter"),
        Some("0") => assert!(!present, "Chromium was started without WebGPU but offers an adapter"),
        _ => {}
    }
    if !present {
        web_sys::console::log_1(&"no WebGPU adapter: the page falls back to the CPU (tested above)".into());
        return;
    }
    let device = WgpuDevice::default();
    init_setup_async::<WebGpu>(&device, Default::default()).await;
    let got = reference::<Wgpu>(&device).await;
    assert_descends(&got);
    let errors = assert_agrees(&got, &native(), 1e-3);
    web_sys::console::log_1(&format!("wasm WebGPU vs native: {errors:?}, losses {:?}", got.losses).into());
}
