//! What the bot says, in Chinese and English, and how messages are rendered for
//! Telegram (HTML with every piece of untrusted text escaped, split within Telegram's
//! length limits).

use crate::desk::{AlertItem, Author, Lang, SearchHit};

/// The 12308 consular-protection hotline, from abroad.
pub const HOTLINE: &str = "+86-10-12308 / +86-10-65612308";

/// Telegram refuses texts longer than 4,096 characters (counted in UTF-16 units) and
/// captions longer than 1,024; stay a little below.
pub const TEXT_MAX: usize = 4000;
pub const CAPTION_MAX: usize = 1000;

/// Escape text for Telegram's HTML parse mode: `<`, `>` and `&` are all it needs.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Split `text` into pieces of at most `max` UTF-16 units, preferring line breaks,
/// then spaces, never inside a character. Escaping happens after splitting, so
/// entities are never cut.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while utf16_len(rest) > max {
        let mut units = 0;
        let mut cut = 0;
        let mut last_newline = None;
        let mut last_space = None;
        for (i, c) in rest.char_indices() {
            let n = c.len_utf16();
            if units + n > max {
                break;
            }
            units += n;
            cut = i + c.len_utf8();
            if c == '\n' {
                last_newline = Some(cut);
            } else if c == ' ' {
                last_space = Some(cut);
            }
        }
        let at = last_newline
            .filter(|p| *p > cut / 2)
            .or(last_space.filter(|p| *p > cut / 2))
            .unwrap_or(cut);
        out.push(rest[..at].to_string());
        rest = &rest[at..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The HTML pieces of a message for the chat: the author's name in bold on the first
/// piece; the service's messages carry a mark instead.
pub fn render(author: &Author, text: &str, max: usize) -> Vec<String> {
    let head = match author {
        Author::Staff(name) => format!("<b>{}</b>\n", escape(name)),
        Author::Service => "ℹ️ ".to_string(),
    };
    // Leave room for the head and for escaping growth of the first piece.
    let budget = max.saturating_sub(utf16_len(&head) + 64).max(100);
    split(text, budget)
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            if i == 0 {
                format!("{head}{}", escape(&piece))
            } else {
                escape(&piece)
            }
        })
        .collect()
}

pub fn lang_of(language: Option<&str>) -> Lang {
    match language {
        Some(l) if l.to_ascii_lowercase().starts_with("zh") => Lang::Zh,
        Some(_) => Lang::En,
        None => Lang::Zh,
    }
}

pub fn greeting(countries_offered: bool) -> String {
    let ask = if countries_offered {
        "请选择您所在的国家，或发送 /country 加两位国家代码（例如 /country BE）。\n\
         Please choose the country you are in, or send /country with its two-letter code (for example /country BE)."
    } else {
        "如需指定所在国家，请发送 /country 加两位国家代码（例如 /country BE）。\n\
         To tell us the country you are in, send /country with its two-letter code (for example /country BE)."
    };
    format!(
        "您好！这里是中国领事服务。请直接在这里写下您的问题，使馆工作人员会尽快回复。\n\
         Hello! This is the Chinese consular service. Write your question here and the embassy's staff will answer as soon as they can.\n\n\
         {ask}\n\n\
         紧急情况请拨打 12308 热线 / In an emergency call the 12308 hotline: {HOTLINE}\n\
         /help 查看命令 · list of commands"
    )
}

pub fn other_country_label() -> &'static str {
    "其他 / Other"
}

pub fn help(lang: Lang) -> String {
    match lang {
        Lang::Zh => format!(
            "直接发送文字、照片或位置，使馆工作人员会在这里回复您。\n\
             /country XX — 设置所在国家（两位代码，例如 BE）\n\
             /lang zh|en — 选择语言\n\
             /search 关键词 — 搜索领事指南\n\
             /alerts — 所在国家的安全提醒\n\
             /sos — 紧急求助\n\
             12308 热线：{HOTLINE}"
        ),
        Lang::En => format!(
            "Send text, photos or your location and the embassy's staff will answer here.\n\
             /country XX — set the country you are in (two letters, e.g. BE)\n\
             /lang zh|en — choose the language\n\
             /search words — search the consular guides\n\
             /alerts — safety alerts for your country\n\
             /sos — emergency help\n\
             12308 hotline: {HOTLINE}"
        ),
    }
}

pub fn country_set(lang: Lang, country: Option<&str>, mission: Option<&str>) -> String {
    match (lang, country, mission) {
        (Lang::Zh, Some(c), Some(m)) => format!("已设置所在国家：{c}。您的消息将转给{m}。"),
        (Lang::Zh, Some(c), None) => format!("已设置所在国家：{c}。"),
        (Lang::Zh, None, _) => "好的。您的消息将转给外交部领事保护中心。如需指定国家，请发送 /country 加两位代码。".into(),
        (Lang::En, Some(c), Some(m)) => format!("Country set to {c}. Your messages go to the {m}."),
        (Lang::En, Some(c), None) => format!("Country set to {c}."),
        (Lang::En, None, _) => "All right. Your messages go to the consular protection centre. To name your country, send /country with its two-letter code.".into(),
    }
}

pub fn country_usage(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "请发送 /country 加两位国家代码，例如 /country BE。",
        Lang::En => "Send /country with a two-letter country code, for example /country BE.",
    }
}

pub fn lang_set(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "好的，之后将用中文回复您。",
        Lang::En => "All right, I will answer in English from now on.",
    }
}

pub fn lang_usage() -> &'static str {
    "请发送 /lang zh 或 /lang en。\nSend /lang zh or /lang en."
}

pub fn search_usage(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "请在 /search 后写下关键词，例如 /search 护照丢失。",
        Lang::En => {
            "Write what you are looking for after /search, for example /search lost passport."
        }
    }
}

pub fn search_results(lang: Lang, hits: &[SearchHit]) -> String {
    if hits.is_empty() {
        return match lang {
            Lang::Zh => "没有找到相关内容。您可以直接在这里提问，工作人员会回复您。".into(),
            Lang::En => {
                "Nothing found. You can ask your question here and the staff will answer.".into()
            }
        };
    }
    let mut out = String::from(match lang {
        Lang::Zh => "找到以下内容：\n",
        Lang::En => "Here is what I found:\n",
    });
    for (i, h) in hits.iter().enumerate() {
        out.push_str(&format!("\n{}. <b>{}</b>", i + 1, escape(&h.title)));
        if let Some(url) = &h.url {
            out.push_str(&format!("\n{}", escape(url)));
        }
        let snippet: String = h.snippet.chars().take(200).collect();
        if !snippet.trim().is_empty() {
            out.push_str(&format!("\n{}", escape(snippet.trim())));
        }
        out.push('\n');
    }
    out
}

pub fn alerts(lang: Lang, items: &[AlertItem], country: Option<&str>) -> String {
    if items.is_empty() {
        return match (lang, country) {
            (Lang::Zh, Some(c)) => format!("{c} 目前没有安全提醒。"),
            (Lang::Zh, None) => "目前没有安全提醒。发送 /country 加国家代码可查看所在国家的提醒。".into(),
            (Lang::En, Some(c)) => format!("There are no safety alerts for {c} right now."),
            (Lang::En, None) => "There are no safety alerts right now. Send /country with your country code to see your country's.".into(),
        };
    }
    let mut out = String::from(match lang {
        Lang::Zh => "当前安全提醒：\n",
        Lang::En => "Current safety alerts:\n",
    });
    for a in items {
        let mark = match a.severity.as_deref() {
            Some("critical") => "🔴",
            Some("high") => "🟠",
            Some("medium") => "🟡",
            _ => "⚪",
        };
        out.push_str(&format!("\n{mark} <b>{}</b>", escape(&a.title)));
        let summary: String = a.summary.chars().take(300).collect();
        if !summary.trim().is_empty() {
            out.push_str(&format!("\n{}", escape(summary.trim())));
        }
        out.push('\n');
    }
    out
}

pub fn hotline(lang: Lang) -> String {
    match lang {
        Lang::Zh => format!(
            "如遇紧急情况，请立即拨打外交部全球领事保护与服务应急热线 12308：{HOTLINE}，并拨打当地报警或急救电话。\n\
             您也可以在这里描述情况并发送位置，使馆工作人员会尽快联系您。"
        ),
        Lang::En => format!(
            "In an emergency, call the 12308 consular-protection hotline now: {HOTLINE}, and the local police or ambulance number.\n\
             You can also describe what is happening here and share your location; the embassy's staff will contact you as soon as they can."
        ),
    }
}

pub fn private_only() -> &'static str {
    "抱歉，本服务只在私聊中提供，请直接私信我。\n\
     Sorry, this service works in private chats only; please message me directly."
}

pub fn too_big(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "文件太大，无法接收（Telegram 机器人最多可下载 20 MB，图片最多 10 MB）。请发送较小的图片。",
        Lang::En => "That file is too big to receive (bots can download at most 20 MB, and images may be at most 10 MB). Please send a smaller picture.",
    }
}

pub fn unsupported(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "抱歉，目前只能转达文字、照片（PNG、JPEG、WebP、GIF）和位置。",
        Lang::En => "Sorry, I can only pass on text, photos (PNG, JPEG, WebP, GIF) and locations.",
    }
}

pub fn refused(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "抱歉，这条消息无法转达（可能为空或过长，文字最多 4000 字）。",
        Lang::En => "Sorry, that message cannot be passed on (it may be empty or too long: at most 4,000 characters).",
    }
}

pub fn try_later(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "抱歉，服务暂时繁忙，请稍后再发一次。紧急情况请拨打 12308。",
        Lang::En => "Sorry, the service is busy; please send that again in a moment. In an emergency call 12308.",
    }
}

pub fn unknown_command(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "没有这个命令。发送 /help 查看可用的命令。",
        Lang::En => "I do not know that command. Send /help for the list.",
    }
}

pub fn location_text(lat: f64, lon: f64, accuracy_m: Option<f64>) -> String {
    let acc = accuracy_m
        .map(|a| format!(" (±{} m)", a.round() as i64))
        .unwrap_or_default();
    format!(
        "📍 位置 / Location: {lat:.6}, {lon:.6}{acc}\nhttps://www.openstreetmap.org/?mlat={lat:.6}&mlon={lon:.6}#map=16/{lat:.6}/{lon:.6}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(escape("<b>&x</b>"), "&lt;b&gt;&amp;x&lt;/b&gt;");
    }

    #[test]
    fn splits_within_utf16_limits_on_boundaries() {
        let text = "😀".repeat(3000); // 6000 UTF-16 units
        let parts = split(&text, 4000);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| utf16_len(p) <= 4000));
        assert_eq!(parts.concat(), text);
        let words = "word ".repeat(1000);
        let parts = split(&words, 1000);
        assert!(parts
            .iter()
            .all(|p| utf16_len(p) <= 1000 && p.ends_with(' ')));
        assert_eq!(parts.concat(), words);
        assert_eq!(split("", 10), vec![String::new()]);
    }

    #[test]
    fn renders_names_in_bold_and_escapes_bodies() {
        let parts = render(&Author::Staff("Li <Wei>".into()), "a < b", TEXT_MAX);
        assert_eq!(parts, vec!["<b>Li &lt;Wei&gt;</b>\na &lt; b".to_string()]);
        let long = "x".repeat(9000);
        let parts = render(&Author::Service, &long, TEXT_MAX);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| utf16_len(p) <= 4096));
    }
}
