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

/// The engine's memory (which never shrinks) after handing it `files` copies of a 1-megapixel
/// PNG of noise: loading copies each file in only while it is decoded, so it grows by far less
/// than the files' total (before, every file was copied in before the first was decoded, which
/// needs at least their total; that version was not run against this test).
#[wasm_bindgen_test]
fn loading_files_does_not_copy_them_all_into_the_engine() {
    use js_sys::{Array, Uint8Array};
    use wasm_bindgen::JsCast;
    let png = {
        let mut state = 1u32;
        let pixels: Vec<u8> = (0..1024 * 1024).map(|_| { state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223); (state >> 24) as u8 }).collect();
        let mut out = std::io::Cursor::new(Vec::new());
        image::GrayImage::from_raw(1024, 1024, pixels).unwrap().write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let files = 48;
    let (names, classes, bytes) = (Array::new(), Array::new(), Array::new());
    for i in 0..files {
        bytes.push(&Uint8Array::from(png.as_slice()));
        names.push(&format!("f{i}.png").into());
        classes.push(&(if i % 2 == 0 { "a" } else { "b" }).into());
    }
    let total = png.len() * files;
    drop(png);
    let memory = || wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>().buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as usize;
    let before = memory();
    let to_strings = |a: &Array| a.iter().map(|v| v.as_string().unwrap()).collect::<Vec<_>>();
    let patients = vec![String::new(); files];
    let session = anondistill::web::Session::from_files(to_strings(&names), to_strings(&classes), patients, bytes, r#"{"max_iterations": 1}"#, None, None, JsValue::UNDEFINED).unwrap();
    let grown = memory() - before;
    web_sys::console::log_1(&format!("{files} files, {} MB in all: the engine's memory grew by {} MB", total >> 20, grown >> 20).into());
    assert!(total > 40 << 20, "the files must outweigh what decoding one needs ({total} bytes)");
    assert!(grown < total / 2, "the engine's memory grew by {grown} bytes for {total} bytes of files");
    drop(session);
}
