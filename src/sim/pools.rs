//! Static value pools the simulator draws realistic content from: Chinese, English and emoji
//! nicknames, companies, stages, sources, the built-in and custom field definitions.

/// Surnames for generated Chinese names.
pub(crate) const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "欧阳", "司马", "诸葛",
];

/// Given names for generated Chinese names.
pub(crate) const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "文超", "晓明", "婷婷", "子涵", "浩然", "雨桐", "欣怡", "梓萱", "一诺", "思远",
];

/// Nicknames that are not plain Chinese names: emoji, English, mixed, odd whitespace.
pub(crate) const OTHER_NICKS: &[&str] = &[
    "🌸小花🌸",
    "阳光☀️",
    "Tony",
    "Grace Chen",
    "A-房产顾问-小王",
    "😊",
    "🐱‍👤忍者猫",
    "~静待花开~",
    "老张（勿扰）",
    "Lucy🍀",
    "👨‍👩‍👧‍👦一家人",
    "  空格昵称  ",
    "ღ᭄꯭苏꯭沐꯭ღ",
    "mike_2019",
    "追风少年🏃",
    "平安喜乐🧧",
    "小胖\u{200d}",
    "\"引号\"",
];

/// Companies for the `企业` field.
pub(crate) const COMPANIES: &[&str] = &[
    "上海探马企业服务有限公司",
    "深圳市腾达科技有限公司",
    "杭州云帆网络科技有限公司",
    "北京星河文化传媒有限公司",
    "广州市百汇贸易有限公司",
    "个体户",
    "Acme Ltd.",
];

/// Values of `销售阶段`.
pub(crate) const STAGES: &[&str] = &[
    "初步接触",
    "需求确认",
    "方案报价",
    "商务谈判",
    "赢单",
    "输单",
];

/// Values of `意向`.
pub(crate) const INTENTS: &[&str] = &["高", "中", "低"];

/// Values of `客户来源`.
pub(crate) const SOURCES: &[&str] = &[
    "扫描二维码",
    "搜索手机号",
    "名片分享",
    "群聊",
    "朋友圈广告",
    "其他",
];

/// Values of `性别 `.
pub(crate) const GENDERS: &[&str] = &["男", "女", "未知"];

/// Phrases for `描述` and free-text custom fields.
pub(crate) const PHRASES: &[&str] = &[
    "老客户转介绍",
    "对价格敏感，需要跟进优惠活动",
    "已加微信，待约面谈",
    "周末有空👍",
    "要求发送产品手册 PDF",
    "多次未回复",
    "VIP 客户，优先服务⭐",
    "line1\nline2",
];

/// Values of the `职业` custom field.
pub(crate) const JOBS: &[&str] = &["教师", "程序员", "医生", "销售", "自由职业", "学生"];

/// Values of the `会员等级` custom field.
pub(crate) const LEVELS: &[&str] = &["普通会员", "银卡", "金卡", "钻石💎"];

/// The built-in fields, in the order the API page lists them: `(id, name)`. Note the trailing
/// space in `性别 `, copied from the documentation's example.
pub(crate) const BUILTIN_FIELDS: &[(i64, &str)] = &[
    (680, "电话"),
    (681, "企业"),
    (682, "描述"),
    (684, "销售阶段"),
    (685, "意向"),
    (686, "客户来源"),
    (683, "姓名"),
    (687, "性别 "),
];

/// Custom fields: `(id, name, outerField)`.
pub(crate) const CUSTOM_FIELDS: &[(i64, &str, &str)] = &[
    (698, "职业", "job"),
    (699, "年龄", "age"),
    (700, "会员等级", "memberLevel"),
    (701, "备注", "remark"),
];

/// Number of the null nickname.
pub(crate) const NICK_NULL: u64 = (SURNAMES.len() * GIVEN.len()) as u64;
/// Number of the empty nickname.
pub(crate) const NICK_EMPTY: u64 = NICK_NULL + 1;

/// Number of distinct nicknames, the null and the empty one included.
pub(crate) fn nickname_count() -> u64 {
    (SURNAMES.len() * GIVEN.len() + OTHER_NICKS.len() + 2) as u64
}

/// The nickname with number `i` (`0..nickname_count()`); distinct numbers give distinct values.
pub(crate) fn nickname(i: u64) -> Option<String> {
    let i = usize::try_from(i % nickname_count()).unwrap_or(0);
    let names = SURNAMES.len() * GIVEN.len();
    if i < names {
        let s = SURNAMES.get(i / GIVEN.len()).copied().unwrap_or("");
        let g = GIVEN.get(i % GIVEN.len()).copied().unwrap_or("");
        return Some(format!("{s}{g}"));
    }
    match i - names {
        0 => None,
        1 => Some(String::new()),
        k => OTHER_NICKS.get(k - 2).map(|s| (*s).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn nicknames_are_distinct() {
        let all: HashSet<Option<String>> = (0..nickname_count()).map(nickname).collect();
        assert_eq!(all.len() as u64, nickname_count());
        assert_eq!(nickname(NICK_NULL), None);
        assert_eq!(nickname(NICK_EMPTY), Some(String::new()));
        assert!(all.contains(&Some(String::new())));
    }
}
