//! What a citizen is told when their conversation becomes an emergency or a fraud is
//! reported, in their language: the local emergency number first, then the 12308
//! hotline, then the mission's duty phone; and the anti-fraud advice with the article
//! that explains it.

use super::types::{CountryCode, Locale, MissionId};
use crate::config::Config;

/// The 12308 hotline, as it is dialled from abroad.
pub const HOTLINE_12308: &str = "+86-10-12308";
pub const HOTLINE_12308_ALT: &str = "+86-10-65612308";
/// The label put on conversations where a fraud was reported.
pub const FRAUD_LABEL: &str = "fraud-report";
/// The knowledge-base article on telephone and online fraud.
pub const FRAUD_ARTICLE: &str = "anti-fraud-notice";

/// Chinese, English, or both when the citizen's language is not known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
    Both,
}

fn lang(locale: Option<&Locale>) -> Lang {
    match locale {
        None => Lang::Both,
        Some(l) if l.is_chinese() => Lang::Zh,
        Some(_) => Lang::En,
    }
}

/// The guidance message of an emergency.
pub fn emergency_guidance(
    config: &Config,
    mission: &MissionId,
    country: Option<CountryCode>,
    locale: Option<&Locale>,
) -> String {
    let m = config.mission(mission.as_str());
    let local = country.and_then(|c| {
        config
            .missions
            .iter()
            .find_map(|m| m.emergency_numbers.get(c.as_str()))
    });
    let duty = m.map(|m| m.duty_phone.as_str()).filter(|d| !d.is_empty());
    let name = m.map(|m| m.name.as_str()).unwrap_or(mission.as_str());
    let zh = {
        let mut t = String::from("【紧急求助】我们已收到您的求助，值班人员正在处理。");
        match local {
            Some(n) => t.push_str(&format!("如有生命危险，请立即拨打当地紧急电话 {n}。")),
            None => t.push_str("如有生命危险，请立即拨打当地报警或急救电话。"),
        }
        t.push_str(&format!(
            "外交部全球领事保护与服务应急呼叫中心 12308（24小时）：{HOTLINE_12308} 或 {HOTLINE_12308_ALT}。"
        ));
        if let Some(d) = duty {
            t.push_str(&format!("{name}值班电话：{d}。"));
        }
        t.push_str("请告诉我们您在哪里、发生了什么、是否安全，并尽量保持手机畅通。");
        t
    };
    let en = {
        let mut t =
            String::from("Emergency: your request has reached the duty officers, who are on it. ");
        match local {
            Some(n) => t.push_str(&format!(
                "If a life is in danger, call the local emergency number {n} now. "
            )),
            None => t.push_str("If a life is in danger, call the local police or ambulance now. "),
        }
        t.push_str(&format!(
            "The 24-hour consular protection hotline 12308: {HOTLINE_12308} or {HOTLINE_12308_ALT}. "
        ));
        if let Some(d) = duty {
            t.push_str(&format!("Duty phone of the {name}: {d}. "));
        }
        t.push_str("Tell us where you are, what is happening and whether you are safe, and keep your phone on.");
        t
    };
    match lang(locale) {
        Lang::Zh => zh,
        Lang::En => en,
        Lang::Both => format!("{zh}\n{en}"),
    }
}

/// The anti-fraud guidance.
pub fn fraud_guidance(locale: Option<&Locale>) -> String {
    let zh = format!(
        "【防诈骗提醒】驻外使领馆不会通过电话、短信、社交软件或视频要求您转账、缴纳“保证金”或“安全账户”，也不会要求您保密或提供银行卡密码。领事费用只在领事APP或使领馆窗口缴纳。自称使领馆、警察、海关或国际刑警要求转账的，请立即挂断，不要转账；如已转账，请马上联系银行和当地警方。详见《防范电信诈骗》：/chat/?article={FRAUD_ARTICLE}"
    );
    let en = format!(
        "Fraud warning: the embassy and consulates never ask you to transfer money, pay a \"deposit\" or move funds to a \"safe account\" by phone, text, messaging app or video call, and never ask you to keep it secret. Consular fees are paid only in the consular app or at the counter. If a caller claiming to be the embassy, the police, customs or Interpol asks for money, hang up and do not pay; if you have paid, call your bank and the local police now. More: /chat/?article={FRAUD_ARTICLE}"
    );
    match lang(locale) {
        Lang::Zh => zh,
        Lang::En => en,
        Lang::Both => format!("{zh}\n{en}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mission;

    fn config() -> Config {
        let mut c = Config::default();
        c.missions.push(Mission {
            id: "be".into(),
            name: "Embassy in Belgium".into(),
            countries: vec!["BE".into()],
            duty_phone: "+32-2-000".into(),
            emergency_numbers: [("BE".to_string(), "112".to_string())].into(),
            ..Mission::default()
        });
        c
    }

    #[test]
    fn guidance_names_the_local_number_the_hotline_and_the_duty_phone() {
        let c = config();
        let be = CountryCode::parse("BE").unwrap();
        let zh = emergency_guidance(
            &c,
            &MissionId::new("be"),
            Some(be),
            Some(&Locale::parse("zh-CN").unwrap()),
        );
        assert!(
            zh.contains("112") && zh.contains("+86-10-12308") && zh.contains("+86-10-65612308")
        );
        assert!(zh.contains("+32-2-000"));
        assert!(!zh.contains("Emergency:"));
        let en = emergency_guidance(
            &c,
            &MissionId::new("be"),
            Some(be),
            Some(&Locale::parse("en").unwrap()),
        );
        assert!(
            en.starts_with("Emergency:") && en.contains("112") && en.contains("Embassy in Belgium")
        );
        let both = emergency_guidance(&c, &MissionId::new("be"), None, None);
        assert!(both.contains("紧急求助") && both.contains("Emergency:"));
        assert!(both.contains("local police"));
    }

    #[test]
    fn fraud_guidance_links_the_article() {
        let t = fraud_guidance(Some(&Locale::parse("en").unwrap()));
        assert!(t.contains("never ask") && t.contains(FRAUD_ARTICLE));
    }
}
