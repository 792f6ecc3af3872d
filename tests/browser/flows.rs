//! Steps the browser scenarios share: signing in, starting a citizen chat, sending.
#![allow(dead_code)]

use std::time::Duration;

use super::Page;
use crate::common::{TestApp, PASSWORD};

/// Sign in to the agent console as `email` (English UI) and wait for the queue.
pub async fn console_sign_in(page: &Page, app: &TestApp, email: &str) {
    page.goto(&app.url("/console/")).await;
    page.fill("Email", email).await;
    page.fill("Password", PASSWORD).await;
    page.click("button", "Sign in").await;
    page.find("heading", "Queue").await;
    wait_connected(page).await;
}

/// Wait for the page's connection status to say it is live.
pub async fn wait_connected(page: &Page) {
    page.wait_js(
        "the live connection",
        "const s = document.querySelector('[role=status][data-state]'); return !!s && s.dataset.state === 'open';",
        vec![],
        Duration::from_secs(20),
    )
    .await;
}

/// Open the citizen chat, choose `country`, give `name`, start; wait until connected.
pub async fn citizen_start(page: &Page, app: &TestApp, name: &str, country: &str) {
    page.goto(&app.url("/chat/")).await;
    page.choose("Country you are in", country).await;
    page.fill("Your name (optional)", name).await;
    page.click("button", "Start chat").await;
    page.find("textbox", "Your message").await;
    wait_connected(page).await;
}

pub async fn citizen_send(page: &Page, text: &str) {
    page.fill("Your message", text).await;
    page.click("button", "Send").await;
}

pub async fn agent_send(page: &Page, text: &str) {
    page.fill("Reply", text).await;
    page.click("button", "Send").await;
}

/// Open the conversation of the citizen called `name` from the console's queue.
pub async fn agent_open(page: &Page, name: &str) {
    // The row is redrawn when its conversation changes (a new message, an assignment):
    // find it again if it went stale between finding and clicking.
    for attempt in 0.. {
        let row = page.find_containing("button", name).await;
        match row.click().await {
            Ok(()) => break,
            Err(e) if attempt < 5 => {
                eprintln!("clicking the row of {name} again: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot open the conversation of {name}: {e}"),
        }
    }
    page.find("heading", name).await;
}

/// A small PNG written to a temp file, for upload through a file input.
pub fn png_file(dir: &std::path::Path, w: u32, h: u32) -> std::path::PathBuf {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, 140])
    });
    let path = dir.join(format!("photo-{w}x{h}.png"));
    img.save(&path).unwrap();
    path
}
