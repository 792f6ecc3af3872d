//! Each modifier of the shipped rules, shown on a pair of messages: the same signal with
//! and without the marker. Also the cases a duty officer gets right without thinking.

use lingshi_triage::{Assessment, Category, Triage};

fn classify(text: &str) -> Assessment {
    Triage::builtin().classify(text, Some("zh-CN"))
}

fn assert_cat(text: &str, want: Category) -> Assessment {
    let a = classify(text);
    assert_eq!(a.category, want, "{text}\n{:#?}", a.reasons);
    a
}

fn has_reason(a: &Assessment, kind: &str) -> bool {
    a.reasons.iter().any(|r| r.kind == kind)
}

#[test]
fn negation() {
    assert_cat("我被抢了", Category::Emergency);
    let a = assert_cat("我没有被抢", Category::Routine);
    assert!(has_reason(&a, "negation"), "{a:#?}");
    assert_cat("我有危险", Category::Routine);
    assert_cat("有危险，有人拿刀", Category::Emergency);
    assert_cat("没有危险", Category::Routine);
    assert_cat("he attacked me", Category::Emergency);
    let a = assert_cat("I'm not hurt, nobody attacked me", Category::Routine);
    assert!(has_reason(&a, "negation"));
    // A negation before a different word does not cancel the danger.
    assert_cat("没有人来救我，他们还在打我", Category::Emergency);
}

#[test]
fn hypothetical() {
    assert_cat("遇到抢劫了，快来", Category::Emergency);
    let a = assert_cat("如果遇到抢劫怎么办", Category::Routine);
    assert!(has_reason(&a, "hypothetical"));
    assert_cat("I got robbed", Category::Emergency);
    assert_cat("what should I do if I get robbed", Category::Routine);
    assert_cat("那边安全吗？听说有绑架", Category::Routine);
}

#[test]
fn fiction_or_news() {
    assert_cat("我被绑架了", Category::Emergency);
    let a = assert_cat("在看一部关于绑架的电影", Category::Routine);
    assert!(has_reason(&a, "fiction_or_news"));
    assert_cat("I read in the news about a kidnapping", Category::Routine);
}

#[test]
fn past() {
    let a = assert_cat("三年前我被抢过，现在想问护照", Category::Routine);
    assert!(has_reason(&a, "past"));
    assert_cat(
        "Years ago I was mugged here, now I need a visa",
        Category::Routine,
    );
}

#[test]
fn over_keeps_urgency() {
    let a = assert_cat(
        "我被抢了，抢的人已经跑了，人没事，护照没了，明天的飞机",
        Category::Urgent,
    );
    assert!(has_reason(&a, "over"));
    // Still present: the danger is not over whatever else is said.
    assert_cat("我被抢了，人没事，可是那个人还在附近", Category::Emergency);
}

#[test]
fn jokes_and_hyperbole() {
    for t in [
        "热死了",
        "累死了",
        "笑死我了",
        "dying to know the fee",
        "this queue is killing me",
    ] {
        assert_cat(t, Category::Routine);
    }
    let a = classify("排队排到要死了");
    assert_eq!(a.category, Category::Routine);
    assert!(has_reason(&a, "joke"), "{a:#?}");
    assert_cat("他说要杀了我", Category::Emergency);
}

#[test]
fn sos_mistake_and_retraction() {
    assert_cat("SOS", Category::Routine); // weight 0.8 alone: asks, does not state, danger
    assert_cat("SOS 救命", Category::Emergency);
    let a = assert_cat(
        "sorry, pressed SOS by accident, all fine",
        Category::Routine,
    );
    assert!(has_reason(&a, "sos_mistake"));
    assert_cat("不好意思按错了", Category::Routine);
    assert_cat("我儿子一直没回家，电话关机", Category::Emergency);
    let a = assert_cat("我儿子一直没回家，现在找到了，没事了", Category::Routine);
    assert!(has_reason(&a, "retraction"));
}

#[test]
fn ordinary_words_and_jieba_boundaries() {
    assert_cat("口罩被抢购一空", Category::Routine);
    assert_cat("他拿着刀", Category::Routine);
    assert_cat("他拿着刀，现在还在门外", Category::Emergency);
    assert_cat("刀削面哪家好吃", Category::Routine);
    assert_cat("I'd like to attach my passport scan", Category::Routine);
}

#[test]
fn belongings_and_custody() {
    assert_cat("我朋友不见了", Category::Emergency);
    assert_cat("我朋友的护照不见了", Category::Routine);
    assert_cat("我被关在一个房间里出不去", Category::Emergency);
    assert_cat("我被关在警察局里", Category::Urgent);
}

#[test]
fn emergencies_without_a_keyword() {
    for t in [
        "a man followed me to my hotel and is knocking on my door now",
        "my son never came back from school and his phone is off",
        "the agency keeps our passports and locks the dormitory",
        "我被关在一个房间里出不去",
        "有人一直跟着我",
    ] {
        assert_cat(t, Category::Emergency);
    }
}

#[test]
fn fraud_versus_emergency() {
    let a = assert_cat(
        "大使馆打电话说我涉嫌洗钱，要我把钱转到安全账户，不要告诉别人",
        Category::Fraud,
    );
    assert!(has_reason(&a, "fraud"));
    assert_cat(
        "Interpol called and said I must pay a deposit to a safe account and keep it secret",
        Category::Fraud,
    );
    assert_cat(
        "他们把我关起来打我，逼我家里转钱才放人",
        Category::Emergency,
    );
}

#[test]
fn urgent_versus_emergency() {
    assert_cat(
        "my bag was stolen, nobody hurt, flight tomorrow",
        Category::Urgent,
    );
    assert_cat(
        "robbed at knifepoint a minute ago and the attacker is still nearby",
        Category::Emergency,
    );
    assert_cat("护照丢了，后天的飞机", Category::Urgent);
    assert_cat("请问签证延期怎么办理", Category::Routine);
}

#[test]
fn chinese_forms_pinyin_typos_and_mixed_text() {
    let a = assert_cat("jiuming", Category::Emergency);
    assert!(has_reason(&a, "pinyin"));
    let a = assert_cat("我被绑价了", Category::Emergency);
    assert!(has_reason(&a, "typo"));
    assert_cat("救名", Category::Emergency);
    assert_cat("綁架", Category::Emergency);
    assert_cat("help 我被抢了", Category::Emergency);
    assert_cat("ＨＥＬＰ　我被绑架了", Category::Emergency);
    let a = assert_cat(
        "someone is folowing me and he has a knife",
        Category::Emergency,
    );
    assert!(has_reason(&a, "typo"), "{a:#?}");
}

#[test]
fn reasons_quote_the_citizen() {
    let text = "救命！有人拿刀抢劫，他还在附近";
    let a = assert_cat(text, Category::Emergency);
    assert!(!a.reasons.is_empty());
    for r in &a.reasons {
        assert!(text.contains(&r.matched), "{r:?}");
        assert!(!r.detail.is_empty());
    }
    assert!(a.score > 0.5 && a.score <= 1.0);
    let a = classify("你好");
    assert_eq!(a.category, Category::Routine);
    assert!(a.reasons.is_empty());
}

#[test]
fn normalisation_as_editors_see_it() {
    let t = Triage::builtin();
    assert_eq!(t.normalised("Ｉ　was ROBBED!!"), "i was rob!!");
    assert_eq!(t.normalised("綁架 救 命"), "绑架救命");
    assert_eq!(t.normalised("jiuming, bei qiang le"), "救命, 被抢 le");
    assert_eq!(t.normalised("我被抢节了"), "我被抢劫了");
    assert_eq!(t.normalised("he is folowing me"), "he is follow me");
    // Ordinary words near a rule word are left alone.
    for w in [
        "either", "bring", "order", "would", "worry", "attach", "anger", "great", "skill",
    ] {
        assert_eq!(t.normalised(w), w, "{w} must not be corrected");
    }
}

#[test]
fn in_care() {
    assert_cat("出车祸了，司机昏迷了", Category::Emergency);
    let a = assert_cat(
        "出车祸了，我受伤了，现在已经在医院，医生说不严重",
        Category::Urgent,
    );
    assert!(has_reason(&a, "in_care"), "{a:#?}");
}
